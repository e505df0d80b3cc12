"""The worker's bookkeeping of run tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vtai.server import ids
from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.worker import Worker
from vtai.server.store import objects, tables
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

_LEASE = Sql("SELECT worker_id, lease_expires_at FROM runs WHERE id = :id")


class _Executor:
    def __init__(self, db: Any = None) -> None:
        self.db = db
        self.executed: list[str] = []

    async def execute(self, run_id: str, run: Any = None, project: Any = None,
                      ahead: Any = None) -> str:
        self.executed.append(run_id)
        return "completed"


class _Answer:
    released = False

    def release(self) -> None:
        self.released = True


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


def _sent_ahead() -> tuple[ModelCall, _Answer]:
    """A model call sent ahead whose answer has begun, and that answer."""
    answer = _Answer()
    opening: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    opening.set_result(answer)
    return ModelCall(route=None, params={}, prompt_tokens=0,  # type: ignore[arg-type]
                     opening=opening), answer


@pytest.mark.parametrize("cancelled", [True, False])
async def test_a_model_call_sent_ahead_is_released_when_its_turn_did_not_read_it(
        cancelled: bool) -> None:
    """Whether the run's task was cancelled before it ran or ended without reading the
    answer (the stub executor does not read it, as a turn that ends early)."""
    executor = _Executor()  # no database: releasing the lease fails, quietly as any release
    worker = Worker(executor)  # type: ignore[arg-type]
    ahead, answer = _sent_ahead()
    worker.adopt({"id": "run_1"}, "proj", ahead)
    if cancelled:
        assert worker.interrupt("run_1")
    for _ in range(5):
        await asyncio.sleep(0)
    assert executor.executed == ([] if cancelled else ["run_1"])
    assert answer.released and ahead.opening is None
