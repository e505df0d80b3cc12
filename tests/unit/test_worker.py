"""The worker's bookkeeping of run tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vtai.server import ids
from vtai.server.runs.worker import Worker
from vtai.server.store import objects, tables
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

_LEASE = Sql("SELECT worker_id, lease_expires_at FROM runs WHERE id = :id")


class _Executor:
    def __init__(self, db: Any = None) -> None:
        self.db = db
        self.executed: list[str] = []

    async def execute(self, run_id: str, run: Any = None, project: Any = None) -> str:
        self.executed.append(run_id)
        return "completed"


async def _lease(store: Database, run_id: str) -> tuple[str | None, int | None]:
    async with store.read() as conn:
        rows = (await conn.sql(_LEASE, {"id": run_id})).rows
    return rows[0][0], rows[0][1]


async def test_a_task_cancelled_before_it_ran_is_released(
        store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = _Executor(store)
    worker = Worker(executor)  # type: ignore[arg-type]
    lease = {"worker_id": worker.id, "lease_expires_at": ids.now() + worker.lease_seconds}
    async with store.write() as conn:  # the run, claimed for the worker as it was made
        await conn.sql(*objects.insert_statement(
            tables.runs, {"id": "run_1", "created_at": 1}, "proj", "{}",
            thread_id="thread_1", status="cancelling", **lease))
    woken = asyncio.Event()
    monkeypatch.setattr(worker, "wake", woken.set)
    worker.adopt({"id": "run_1"}, "proj")
    assert worker.interrupt("run_1")  # a cancel before the task's first step
    await asyncio.wait_for(woken.wait(), 10)  # the loop looks again: it finishes the cancel
    assert executor.executed == []
    assert worker.tasks == {} and await _lease(store, "run_1") == (None, None)  # released


async def test_outputs_arriving_while_a_turn_ends_start_the_next_turn_after_it() -> None:
    executor = _Executor()
    worker = Worker(executor)  # type: ignore[arg-type]
    worker.adopt({"id": "run_1"}, "proj")
    worker.adopt({"id": "run_1", "status": "queued"}, "proj")  # still running: deferred
    for _ in range(10):
        await asyncio.sleep(0)
    assert executor.executed == ["run_1", "run_1"] and worker.tasks == {}
