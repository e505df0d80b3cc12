"""Database.write_batch: many rows in one transaction of their own; on SQLite in a thread,
so the event loop goes on while they are written."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from vtai.server.runs.events import _INSERT_EVENT
from vtai.server.store.db import Database, Sql

_COUNT = Sql("SELECT count(*) FROM run_events WHERE run_id = :run_id")


def _rows(run_id: str, n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"id": f"evt_{run_id}_{i:06d}", "run_id": run_id, "event": "thread.message.delta",
             "data": "x" * 200, "created_at": 1} for i in range(start, start + n)]


async def _count(db: Database, run_id: str) -> int:
    async with db.read() as conn:
        return int((await conn.sql(_COUNT, {"run_id": run_id})).scalar())


async def test_a_batch_is_stored_whole_or_not_at_all(store: Database) -> None:
    await store.write_batch(_INSERT_EVENT, _rows("run_a", 500))
    assert await _count(store, "run_a") == 500
    clashing = _rows("run_b", 100) + _rows("run_a", 1)  # the last row's id is taken
    with pytest.raises((sa_exc.IntegrityError, sqlite3.IntegrityError)):
        await store.write_batch(_INSERT_EVENT, clashing)
    assert await _count(store, "run_b") == 0
    await store.write_batch(_INSERT_EVENT, _rows("run_b", 3))  # and writes go on
    async with store.write() as conn:
        await conn.sql_many(_INSERT_EVENT, _rows("run_b", 2, start=3))
    assert await _count(store, "run_b") == 5


async def test_on_sqlite_the_event_loop_runs_while_a_batch_is_written(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/vtai.db")
    await db.migrate()
    turns = 0
    writing = True

    async def tick() -> None:
        nonlocal turns
        while writing:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        before = turns
        await db.write_batch(_INSERT_EVENT, _rows("run_a", 20_000))
        during = turns - before
        writing = False
        await ticker
        assert during > 1  # (written in the loop, the batch would have left it no turn)
        assert await _count(db, "run_a") == 20_000
    finally:
        writing = False
        await db.close()
