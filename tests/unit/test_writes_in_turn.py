"""Storing a new run (store.writes.insert_run): one durable write in its thread's turn, on
SQLite and on PostgreSQL (there one statement that takes the turn's lock); and the unique
index that keeps a thread to one active run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from tests.unit.wal import flushed_past, wal_end
from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL
from vtai.server.store import objects, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

_ACTIVE_RUNS = Sql("SELECT id FROM runs WHERE thread_id = :thread_id AND status IN "
                   "('queued', 'in_progress', 'requires_action', 'cancelling') ORDER BY id")


async def _thread(db: Database, project: str = "proj") -> str:
    thread = {"id": ids.new_id("thread_"), "created_at": ids.now()}
    async with db.write() as conn:
        await objects.insert_object(conn, tables.threads, thread, project)
    return str(thread["id"])


def _run_params(thread_id: str, status: str = states.QUEUED, project: str = "proj",
                lease: tuple[str, int] | None = None) -> dict[str, Any]:
    """A new run's columns."""
    run_id = ids.new_id("run_")
    return {"id": run_id, "project_id": project, "created_at": ids.now(),
            "data": f'{{"id": "{run_id}"}}', "thread_id": thread_id, "status": status,
            "worker_id": lease[0] if lease else None,
            "lease_expires_at": lease[1] if lease else None}


async def _start(db: Database, run: dict[str, Any], notify: str | None = None) -> int:
    return int(await writes.insert_run(db, run, notify))


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
    run = first
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
    leased = _run_params(thread_id, lease=("w1", 99))
    assert await _start(store, leased) == 1
    async with store.read() as conn:
        claim = (await conn.sql(Sql("SELECT worker_id, lease_expires_at FROM runs "
                                    "WHERE id = :id"), {"id": leased["id"]})).rows
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
        async with store.write(turn=writes.thread_turn(thread_id)):
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_turn())
    await holding.wait()
    starting = asyncio.create_task(_start(store, _run_params(thread_id)))
    await asyncio.sleep(0.5)  # the condition tested: still waiting after half a second
    assert not starting.done()
    if not store.is_sqlite:  # (SQLite's writes all take turns)
        other = await _thread(store)  # another turn does not wait
        assert await asyncio.wait_for(_start(store, _run_params(other)), 5) == 1
    release.set()
    await holder
    assert await asyncio.wait_for(starting, 5) == 1


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
        await asyncio.sleep(0.3)  # the condition tested: no notification comes meanwhile
        assert notified.empty()
    finally:
        await listener.close()
        await db.close()
