"""Transactions on PostgreSQL that are interrupted: the pool never hands out a connection
still inside one (nor holding a thread's turn)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import require_postgres
from tests.support import postgres_database
from vtai.server.store.db import Database, Sql

# A setting local to a transaction: seen again only inside that same transaction.
_MARK = Sql("SELECT set_config('vtai.test_mark', 'left over', true)")
_MARKED = Sql("SELECT coalesce(current_setting('vtai.test_mark', true), '')")
_WAITING = Sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
               "AND database = (SELECT oid FROM pg_database "
               "WHERE datname = current_database())")


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    with postgres_database() as url:
        yield url


async def _until_waiting_for_a_turn(url: str) -> None:
    """Until a transaction of the database at ``url`` waits for an advisory lock."""
    watcher = Database(url, pool_size=1)
    try:
        while True:
            async with watcher.read() as conn:
                if (await conn.sql(_WAITING)).rows[0][0]:
                    return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()


async def _no_connection_in_transaction(db: Database, pool_size: int) -> None:
    held = []
    try:
        for _ in range(pool_size):  # every connection of the pool, at once
            context = db.read()
            conn = await context.__aenter__()
            held.append(context)
            assert (await conn.sql(_MARKED)).rows[0][0] == ""
            assert not conn._raw.is_in_transaction()  # type: ignore[attr-defined]
    finally:
        for context in held:
            await context.__aexit__(None, None, None)


async def test_cancelled_while_waiting_for_the_turn(pg_url: str) -> None:
    db = Database(pg_url, pool_size=2)
    try:
        turn_taken, turn_ends = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with db.write(turn="thread") as conn:
                await conn.sql(_MARK)
                turn_taken.set()
                await turn_ends.wait()

        async def second() -> None:
            async with db.write(turn="thread") as conn:
                await conn.sql(_MARK)

        holder = asyncio.create_task(first())
        await turn_taken.wait()
        waiter = asyncio.create_task(second())
        await asyncio.wait_for(_until_waiting_for_a_turn(pg_url), 10)  # in its BEGIN
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        turn_ends.set()
        await holder
        await asyncio.wait_for(_no_connection_in_transaction(db, 2), 10)
        # The turn is free: another write on the same thread goes through at once.
        await asyncio.wait_for(second(), 10)
    finally:
        await db.close()


async def test_cancelled_again_while_rolling_back(pg_url: str) -> None:
    db = Database(pg_url, pool_size=1)
    try:
        entered = asyncio.Event()

        async def writer() -> None:
            async with db.write() as conn:
                await conn.sql(_MARK)
                entered.set()
                await asyncio.sleep(30)  # cancelled here: the block rolls back

        task = asyncio.create_task(writer())
        await entered.wait()
        task.cancel()  # the ROLLBACK starts...
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()  # ...and its wait for PostgreSQL is cancelled too
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(_no_connection_in_transaction(db, 1), 10)
        async with db.write() as conn:
            assert (await conn.sql(Sql("SELECT 2"))).rows[0][0] == 2
    finally:
        await db.close()
