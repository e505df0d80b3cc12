"""A turn's end in one write: store.writes.save, and RunRecords.changes(gather=True) built on
it. The saves stand or fall with the run's compare-and-set, and their commit is durable, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from tests.unit.runs_support import RecordingBus, insert_run, new_run
from tests.unit.wal import flushed_past, wal_end
from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.records import Conflict, RunRecords
from vtai.server.store import objects, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

_ROWS = Sql("SELECT id, status, data FROM runs UNION ALL SELECT id, '', data FROM messages "
            "ORDER BY 1")


async def _stored(db: Database) -> list[tuple[str, str, str]]:
    async with db.read() as conn:
        return [tuple(row) for row in (await conn.sql(_ROWS)).rows]


async def _opened(db: Database, records: RunRecords, run: dict[str, Any]) -> Any:
    first = {"content": [{"index": 0, "type": "text",
                          "text": {"value": "Hi", "annotations": []}}]}
    opened = records.open_message(run, "proj", first)
    await records.store_opened(opened)
    return opened


def _move(run: dict[str, Any], status: str, expected: str) -> writes.RunWrite:
    return writes.RunWrite(run["id"], expected, status, objects.dumps(run))


async def test_saves_are_made_when_the_move_happens(store: Database) -> None:
    run = new_run()
    await insert_run(store, run)
    message = {"id": "msg_1", "created_at": 1}
    async with store.write() as conn:
        await conn.sql(*objects.insert_statement(tables.messages, message, "proj", "{}",
                                                 thread_id="thread_1", run_id=run["id"]))
    done = await writes.save(store, _move(run, "completed", "in_progress"), {},
                             {"msg_1": '{"text": "all of it"}'})
    assert done
    assert await _stored(store) == [("msg_1", "", '{"text": "all of it"}'),
                                 (run["id"], "completed", objects.dumps(run))]


async def test_nothing_is_saved_when_the_move_does_not_happen(store: Database) -> None:
    run = new_run(states.CANCELLING)
    await insert_run(store, run)
    async with store.write() as conn:
        await conn.sql(*objects.insert_statement(tables.messages, {"id": "msg_1",
                                                                   "created_at": 1},
                                                 "proj", "{}", thread_id="thread_1"))
    before = await _stored(store)
    done = await writes.save(store, _move(run, "completed", "in_progress"), {},
                             {"msg_1": '{"text": "all of it"}'})
    assert not done
    assert await _stored(store) == before


async def test_a_move_keeps_sets_or_clears_the_lease(store: Database) -> None:
    run = new_run()
    await insert_run(store, run)
    lease = Sql("SELECT worker_id, lease_expires_at FROM runs WHERE id = :id")

    async def claim() -> tuple[Any, ...]:
        async with store.read() as conn:
            return tuple((await conn.sql(lease, {"id": run["id"]})).rows[0])

    moves = [("set", states.QUEUED, ("w1", 99)), ("keep", states.IN_PROGRESS, ("w1", 99)),
             ("clear", states.REQUIRES_ACTION, (None, None))]
    status = run["status"]
    for mode, target, expected in moves:
        write = dataclasses.replace(_move(run, target, status), lease=mode,  # type: ignore[arg-type]
                                    worker_id="w1", lease_expires_at=99)
        assert await writes.save(store, write, {}, {})
        assert await claim() == expected
        status = target


async def test_the_compound_writes_are_durable_on_postgresql(store_url: str) -> None:
    """The server's connections commit without waiting for the WAL flush unless told to
    (a run's start, a message opened); a turn's end waits for it, as a write() transaction
    does, and so does a new thread (see wal.py for the check)."""
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite's commits are durable in their transaction (see Database)")
    db = Database(store_url)
    await db.migrate()
    try:
        async with db.read() as conn:
            setting = Sql("SELECT current_setting('synchronous_commit')")
            assert (await conn.sql(setting)).scalar() == "off"
        run = new_run()
        await insert_run(db, run)
        statuses = (states.IN_PROGRESS, states.REQUIRES_ACTION)
        for n in range(5):
            before = await wal_end(db)
            assert await writes.save(db, _move(run, statuses[(n + 1) % 2], statuses[n % 2]),
                                     {}, {})
            assert await flushed_past(db, before), f"write {n}: the WAL was not flushed"
        for n in range(5):
            messages = [writes.RunRow(ids.new_id("msg_"), "proj", 1, "{}", "t", None)
                        for _ in range(n % 3)]
            thread = {"id": ids.new_id("thread_"), "project_id": "proj", "created_at": 1,
                      "data": "{}"}
            before = await wal_end(db)
            await writes.insert_thread(db, thread, messages)
            assert await flushed_past(db, before), f"thread {n}: the WAL was not flushed"
            async with db.read() as conn:
                count = Sql("SELECT count(*) FROM messages WHERE thread_id = :id")
                assert (await conn.sql(count, {"id": thread["id"]})).scalar() == n % 3
    finally:
        await db.close()


async def test_a_turns_end_is_gathered_into_one_write(store: Database) -> None:
    bus = RecordingBus()
    records = RunRecords(store, bus)  # type: ignore[arg-type]
    run = new_run()
    await insert_run(store, run)
    opened = await _opened(store, records, run)
    bus.published.clear()
    step, message = opened.step, opened.message
    async with records.changes(gather=True) as tx:
        await tx.save_message({**message, "status": "completed",
                               "content": [{"type": "text", "text": {
                                   "value": "Hi there", "annotations": []}}]}, "completed")
        step.update(status="completed", completed_at=ids.now(),
                    usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        await tx.save_step(step, "completed")
        # The steps as this transaction leaves them, before anything is written.
        steps = await tx.run_steps(run["id"])
        assert [s["status"] for s in steps] == ["completed"]
        await tx.move(run, states.COMPLETED, usage=steps[0]["usage"])
        assert not bus.published  # not before the write
    assert [event.event for _, event in bus.published] == [
        "thread.message.completed", "thread.run.step.completed", "thread.run.completed"]
    stored = {row[0]: row for row in await _stored(store)}
    assert stored[run["id"]][1] == "completed"
    assert orjson.loads(stored[run["id"]][2])["usage"]["total_tokens"] == 5
    assert orjson.loads(stored[message["id"]][2])["content"][0]["text"]["value"] == "Hi there"
    assert [s["status"] for s in await records.run_steps(run["id"])] == ["completed"]


async def test_a_gathered_turns_end_is_not_written_if_the_run_moved_meanwhile(
        store: Database) -> None:
    bus = RecordingBus()
    records = RunRecords(store, bus)  # type: ignore[arg-type]
    run = new_run()
    await insert_run(store, run)
    opened = await _opened(store, records, run)
    await records.move(run, states.CANCELLING)  # a cancel, between the read and the write
    bus.published.clear()
    before = await _stored(store)
    with pytest.raises(Conflict):
        async with records.changes(gather=True) as tx:
            await tx.save_message({**opened.message, "status": "completed"}, "completed")
            await tx.save_step({**opened.step, "status": "completed"}, "completed")
            await tx.move(run, states.COMPLETED)
    assert await _stored(store) == before
    assert [s["status"] for s in await records.run_steps(run["id"])] == ["in_progress"]
    assert not bus.published


async def test_a_change_that_needs_a_transaction_is_refused_when_gathering(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("on SQLite, changes(gather=True) is a transaction")
    db = Database(store_url)
    await db.migrate()
    try:
        records = RunRecords(db, RecordingBus())  # type: ignore[arg-type]
        run = new_run()
        await insert_run(db, run)
        with pytest.raises(TypeError, match="transaction"):
            async with records.changes(gather=True) as tx:
                await tx.open_messages(run["id"])
        with pytest.raises(TypeError, match="transaction"):
            async with records.changes(gather=True) as tx:
                await tx.move(run, states.REQUIRES_ACTION)
                await tx.move({**run, "status": states.REQUIRES_ACTION}, states.QUEUED)
    finally:
        await db.close()


async def test_a_run_starts_with_its_message_in_one_write(store: Database) -> None:
    """RunRecords.start with a new message: the run in_progress and the message and its step
    stored together, then announced, in_progress first."""
    bus = RecordingBus()
    records = RunRecords(store, bus)  # type: ignore[arg-type]
    run = new_run(states.QUEUED)
    await insert_run(store, run)
    opened = records.new_message(run, "proj")
    assert not bus.published  # made, not announced
    started = await records.start(run, opened)
    assert started["status"] == states.IN_PROGRESS and started["started_at"]
    assert [event.event for _, event in bus.published] == [
        "thread.run.in_progress", "thread.run.step.created", "thread.run.step.in_progress",
        "thread.message.created", "thread.message.in_progress"]
    ids_ = [event.id for _, event in bus.published]
    assert ids_ == sorted(ids_) and len(set(ids_)) == 5  # stamped in stream order
    stored = {row[0]: row for row in await _stored(store)}
    assert stored[run["id"]][1] == states.IN_PROGRESS
    assert orjson.loads(stored[opened.message["id"]][2]) == opened.message
    assert await records.run_steps(run["id"]) == [opened.step]


async def test_a_run_moved_meanwhile_starts_without_its_message(store: Database) -> None:
    bus = RecordingBus()
    records = RunRecords(store, bus)  # type: ignore[arg-type]
    run = new_run(states.QUEUED)
    await insert_run(store, run)
    await records.move(run, states.CANCELLING)  # a cancel, between the read and the write
    bus.published.clear()
    opened = records.new_message(run, "proj")
    with pytest.raises(Conflict):
        await records.start(run, opened)
    assert not bus.published
    assert [row[0] for row in await _stored(store)] == [run["id"]]  # no message
    assert await records.run_steps(run["id"]) == []
