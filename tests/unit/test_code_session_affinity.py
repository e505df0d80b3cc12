"""Workers leave a run to the process holding its thread's local code kernel while that
process lives (code_sessions), both when claiming queued runs and for a run made in their own
process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import insert, select

from vtai.server import ids
from vtai.server.runs.worker import Worker
from vtai.server.store import objects, tables
from vtai.server.store.db import Database
from vtai.server.tools.code_interpreter.session_rows import (
    HOLDER,
    Row,
    SessionRows,
    SessionState,
    reset_note,
)

CODE_TOOLS = [{"type": "code_interpreter"}]


class _Executor:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.executed: list[str] = []

    async def execute(self, run_id: str, run: Any = None, project: Any = None,
                      ahead: Any = None) -> str:
        self.executed.append(run_id)
        return "completed"

    async def sweep(self) -> None:
        pass


async def _hold(store: Database, thread_id: str, holder: str, until: int) -> None:
    async with store.write() as conn:
        await conn.execute(insert(tables.code_sessions).values(
            session_id=thread_id, project_id="proj", backend="local", holder=holder,
            holder_expires_at=until, state=SessionState().dumps(), last_used_at=ids.now()))


async def _queued(store: Database, run_id: str, thread_id: str, **lease: Any) -> None:
    async with store.write() as conn:
        await conn.sql(*objects.insert_statement(
            tables.runs, {"id": run_id, "created_at": 1}, "proj", "{}",
            thread_id=thread_id, status="queued", **lease))


async def _worker_of(store: Database, run_id: str) -> str | None:
    async with store.read() as conn:
        return (await conn.execute(select(tables.runs.c.worker_id).where(
            tables.runs.c.id == run_id))).scalar()


async def test_claims_leave_runs_to_the_live_holder_of_their_kernel(store: Database) -> None:
    now = ids.now()
    await _hold(store, "thread_held", "other-process", now + 30)
    await _hold(store, "thread_lapsed", "dead-process", now - 1)  # its holder died
    await _hold(store, "thread_mine", HOLDER, now + 30)
    for name in ("held", "lapsed", "mine", "free"):
        await _queued(store, f"run_{name}", f"thread_{name}")
    worker = Worker(_Executor(store))  # type: ignore[arg-type]
    claimed = await worker._claim()
    assert sorted(claimed) == ["run_free", "run_lapsed", "run_mine"]
    assert await _worker_of(store, "run_held") is None


async def test_a_run_made_here_is_passed_on_to_the_holder(
        store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await _hold(store, "thread_2", "other-process", ids.now() + 30)
    await _hold(store, "thread_3", "other-process", ids.now() + 30)
    executor = _Executor(store)
    worker = Worker(executor)  # type: ignore[arg-type]
    lease = {"worker_id": worker.id, "lease_expires_at": ids.now() + worker.lease_seconds}
    await _queued(store, "run_2", "thread_2", **lease)
    woken = asyncio.Event()
    monkeypatch.setattr(worker, "wake", woken.set)
    worker.adopt({"id": "run_2", "thread_id": "thread_2", "tools": CODE_TOOLS}, "proj")
    await asyncio.wait_for(woken.wait(), 10)
    assert executor.executed == []
    assert await _worker_of(store, "run_2") is None  # released, for the holder to claim
    # A run without the code interpreter runs where it was made.
    await _queued(store, "run_3", "thread_3", **lease)
    worker.adopt({"id": "run_3", "thread_id": "thread_3", "tools": []}, "proj")
    await asyncio.wait_for(worker.tasks["run_3"], 10)
    assert executor.executed == ["run_3"]


async def test_session_rows_begin_end_and_the_reset_note(store: Database) -> None:
    rows = SessionRows(store)
    assert await rows.get("proj", "thread_9") is None
    await rows.begin("proj", "thread_9", "local")
    row = await rows.get("proj", "thread_9")
    assert row is not None and row.holder == HOLDER and not row.held_elsewhere()
    assert await rows.get("other", "thread_9") is None  # another project's
    await rows.save("thread_9", SessionState({"file-1": "a.csv"}, 10))
    await rows.end(["thread_9"], "was stopped after 6 seconds without a call")
    row = await rows.get("proj", "thread_9")
    assert row is not None and row.holder is None
    assert row.state == SessionState({"file-1": "a.csv"}, 10)
    assert reset_note(row) == (
        "Note: this is a new Python session: the previous one was stopped after 6 seconds "
        "without a call, so variables, imports and files written in /mnt/data by earlier "
        "calls are gone.")
    assert reset_note(None) == ""
    gone = Row("t", "proj", "local", None, "dead", ids.now() - 5, SessionState(), None)
    assert "ended with the worker that held it" in reset_note(gone)
