"""The worker's bookkeeping of run tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.worker import Worker


class _Executor:
    def __init__(self) -> None:
        self.db: Any = None
        self.executed: list[str] = []

    async def execute(self, run_id: str, run: Any = None, project: Any = None,
                      ahead: Any = None) -> str:
        self.executed.append(run_id)
        return "completed"


class _Answer:
    released = False

    def release(self) -> None:
        self.released = True


async def test_a_task_cancelled_before_it_ran_is_released() -> None:
    executor = _Executor()
    worker = Worker(executor)  # type: ignore[arg-type]
    released: list[str] = []

    async def release(run_id: str) -> None:
        released.append(run_id)

    worker._release = release  # type: ignore[method-assign]
    worker.adopt({"id": "run_1"}, "proj")
    assert worker.interrupt("run_1")  # a cancel before the task's first step
    for _ in range(5):
        await asyncio.sleep(0)
    assert executor.executed == []
    assert worker.tasks == {} and released == ["run_1"]
    assert worker._wake.is_set()  # the loop looks again: it finishes the cancel


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
    executor = _Executor()
    worker = Worker(executor)  # type: ignore[arg-type]

    async def release(run_id: str) -> None:
        pass

    worker._release = release  # type: ignore[method-assign]
    ahead, answer = _sent_ahead()
    worker.adopt({"id": "run_1"}, "proj", ahead)
    if cancelled:
        assert worker.interrupt("run_1")
    for _ in range(5):
        await asyncio.sleep(0)
    assert executor.executed == ([] if cancelled else ["run_1"])
    assert answer.released and ahead.opening is None
