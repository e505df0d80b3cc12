"""Database.write_in_turn, and starting a run with it (queries.run_insert): one durable
statement that takes the turn of its key, on SQLite and on PostgreSQL; and the unique index
that keeps a thread to one active run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from tests.unit.wal import flushed_past, wal_end
from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL
from vtai.server.store import objects, queries, tables
from vtai.server.store.db import Database, Sql

_ACTIVE_RUNS = Sql("SELECT id FROM runs WHERE thread_id = :thread_id AND status IN "
                   "('queued', 'in_progress', 'requires_action', 'cancelling') ORDER BY id")


async def _thread(db: Database, project: str = "proj") -> str:
    thread = {"id": ids.new_id("thread_"), "created_at": ids.now()}
    async with db.write() as conn:
        await objects.insert_object(conn, tables.threads, thread, project)
    return str(thread["id"])


def _run_params(thread_id: str, status: str = states.QUEUED,
                project: str = "proj") -> tuple[Sql, dict[str, Any]]:
    """A new run's insert (queries.run_insert)."""
    run = {"id": ids.new_id("run_"), "created_at": ids.now(), "thread_id": thread_id,
           "status": status}
    return queries.run_insert(run, project, f'{{"id": "{run["id"]}"}}', None)


async def _start(db: Database, insert: tuple[Sql, dict[str, Any]],
                 notify: str | None = None) -> int:
    return await db.write_in_turn(queries.thread_turn(insert[1]["thread_id"]), *insert,
                                  notify)


async def _active(db: Database, thread_id: str) -> list[str]:
    async with db.read() as conn:
        return [row[0] for row in (await conn.sql(_ACTIVE_RUNS,
                                                  {"thread_id": thread_id})).rows]


async def test_a_run_is_stored_only_on_a_thread_of_its_project_without_an_active_run(
        store: Database) -> None:
    thread_id = await _thread(store)
    assert await _start(store, _run_params("thread_missing")) == 0
    assert await _start(store, _run_params(thread_id, project="other")) == 0
    first = _run_params(thread_id)
    assert await _start(store, first) == 1
    assert await _start(store, _run_params(thread_id)) == 0
    run = first[1]
    assert await _active(store, thread_id) == [run["id"]]
    async with store.read() as conn:
        stored = (await conn.sql(Sql(
            "SELECT project_id, created_at, status, worker_id, lease_expires_at, data "
            "FROM runs WHERE id = :id"), {"id": run["id"]})).rows
    assert [tuple(row) for row in stored] == [
        ("proj", run["created_at"], states.QUEUED, None, None, run["data"])]
    async with store.write() as conn:  # once it is finished, the thread takes another
        await conn.sql(Sql("UPDATE runs SET status = 'completed' WHERE id = :id"),
                       {"id": run["id"]})
    leased = queries.run_insert({"id": ids.new_id("run_"), "created_at": 1,
                                 "thread_id": thread_id, "status": states.QUEUED}, "proj", "{}",
                                {"worker_id": "w1", "lease_expires_at": 99})
    assert await _start(store, leased) == 1
    async with store.read() as conn:
        claim = (await conn.sql(Sql("SELECT worker_id, lease_expires_at FROM runs "
                                    "WHERE id = :id"), {"id": leased[1]["id"]})).rows
    assert [tuple(row) for row in claim] == [("w1", 99)]


async def test_the_index_keeps_a_thread_to_one_active_run(store: Database) -> None:
    """Even a write that does not check (or checks what it read before another committed)."""
    thread_id = await _thread(store)
    insert = Sql("INSERT INTO runs (id, project_id, created_at, thread_id, status, data) "
                 "VALUES (:id, 'proj', 0, :thread_id, :status, '{}')")
    async with store.write() as conn:
        for status in (states.COMPLETED, states.FAILED, states.REQUIRES_ACTION):
            await conn.sql(insert, {"id": ids.new_id("run_"), "thread_id": thread_id,
                                    "status": status})
    for status in sorted(states.ACTIVE):
        with pytest.raises(sa_exc.IntegrityError):
            async with store.write() as conn:
                await conn.sql(insert, {"id": ids.new_id("run_"), "thread_id": thread_id,
                                        "status": status})
    assert len(await _active(store, thread_id)) == 1


async def test_runs_started_at_once_on_a_thread_leave_one_active(store: Database) -> None:
    thread_id = await _thread(store)
    results = await asyncio.gather(*(_start(store, _run_params(thread_id)) for _ in range(8)),
                                   return_exceptions=True)
    stored = [r for r in results if r == 1]
    assert len(stored) == 1, results
    assert all(r == 0 or isinstance(r, sa_exc.IntegrityError) for r in results if r != 1)
    assert len(await _active(store, thread_id)) == 1


async def test_a_write_in_turn_waits_for_a_transaction_of_the_same_turn(
        store: Database) -> None:
    thread_id = await _thread(store)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_turn() -> None:
        async with store.write(turn=queries.thread_turn(thread_id)):
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_turn())
    await holding.wait()
    starting = asyncio.create_task(_start(store, _run_params(thread_id)))
    await asyncio.sleep(0.5)
    assert not starting.done()
    if not store.is_sqlite:  # (SQLite's writes all take turns)
        other = await _thread(store)  # another turn does not wait
        assert await asyncio.wait_for(_start(store, _run_params(other)), 5) == 1
    release.set()
    await holder
    assert await asyncio.wait_for(starting, 5) == 1


async def test_the_form_of_a_write_in_turn_is_checked(store: Database) -> None:
    for statement in ("UPDATE runs SET status = 'x' WHERE id = :id",
                      "INSERT INTO runs (id) SELECT id FROM threads WHERE id = :id",
                      "INSERT INTO runs (id) SELECT :id"):
        with pytest.raises(ValueError, match="INSERT"):
            await store.write_in_turn("t", Sql(statement), {"id": "x"})


async def test_a_write_in_turn_is_durable_and_notifies_on_postgresql(store_url: str) -> None:
    """Its commit waits for the WAL flush (see wal.py for the check), and the
    channel it names is notified."""
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite's commits are durable in their transaction; NOTIFY is PostgreSQL's")
    db = Database(store_url)
    await db.migrate()
    notified: asyncio.Queue[str] = asyncio.Queue()
    listener = await db.listen({WORK_CHANNEL: notified.put_nowait})
    try:
        for n in range(5):
            thread_id = await _thread(db)
            before = await wal_end(db)
            assert await _start(db, _run_params(thread_id), WORK_CHANNEL) == 1
            assert await flushed_past(db, before), f"write {n}: the WAL was not flushed"
            assert await asyncio.wait_for(notified.get(), 5) == ""
        assert await _start(db, _run_params(await _thread(db))) == 1  # no channel: no NOTIFY
        await asyncio.sleep(0.3)
        assert notified.empty()
    finally:
        await listener.close()
        await db.close()
