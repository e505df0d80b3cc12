"""How a run that does not complete ends: its usage is its steps' together, whatever the
ending, and only an expired run keeps its ``expires_at``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.runs_support import RecordingBus, insert_run, new_run
from vtai.server.runs import states
from vtai.server.runs.endings import Endings
from vtai.server.runs.model_call import RunFailure
from vtai.server.runs.records import RunRecords
from vtai.server.runs.turn_state import Turn
from vtai.server.store.db import Database, Sql

_MESSAGE = Sql("SELECT data FROM messages WHERE id = :id")
_USED = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


async def _run_with_steps(store: Database, status: str, message: bool
                          ) -> tuple[Endings, RunRecords, dict[str, Any], Turn]:
    """A run with a finished tool-call step (which used tokens) and, if ``message``, a
    message its turn is writing (its step in progress)."""
    records = RunRecords(store, RecordingBus())  # type: ignore[arg-type]
    endings = Endings(records, {})
    run = new_run(status)
    await insert_run(store, run)
    step = await records.create_step(run, "proj", {"type": "tool_calls", "tool_calls": []})
    step.update(status="completed", usage=_USED)
    async with records.changes() as tx:
        await tx.save_step(step, "completed")
    turn = Turn()
    if message:
        opened = records.open_message(run, "proj")
        await records.store_opened(opened)
        turn.hold(opened)
    return endings, records, run, turn


async def _message_status(store: Database, message_id: str) -> str | None:
    async with store.read() as conn:
        rows = (await conn.sql(_MESSAGE, {"id": message_id})).rows
    return None if not rows else ("incomplete" if '"status":"incomplete"' in rows[0][0]
                                  else "other")


@pytest.mark.parametrize("ending", ["failed", "cancelled", "expired"])
async def test_a_run_that_does_not_complete_has_usage_and_closes_what_was_open(
        store: Database, ending: str) -> None:
    status = {"failed": states.IN_PROGRESS, "cancelled": states.CANCELLING,
              "expired": states.REQUIRES_ACTION}[ending]
    endings, records, run, turn = await _run_with_steps(store, status,
                                                         message=ending != "expired")
    if ending == "failed":
        await endings.fail(run["id"], turn, RunFailure("server_error", "gone"))
    elif ending == "cancelled":
        await endings.cancel(run, turn)
    else:
        await endings.expire(run)
    ended = await records.load(run["id"])
    assert ended is not None and ended["status"] == ending
    assert ended["usage"] == _USED
    assert ended["expires_at"] == (run["expires_at"] if ending == "expired" else None)
    statuses = {step["step_details"]["type"]: step["status"]
                for step in await records.run_steps(run["id"])}
    if turn.message is None:
        assert statuses == {"tool_calls": "completed"}
    else:
        assert statuses == {"tool_calls": "completed", "message_creation": ending}
        assert await _message_status(store, turn.message["id"]) == "incomplete"


async def test_a_run_given_up_fails_without_what_its_lost_worker_left(store: Database) -> None:
    endings, records, run, turn = await _run_with_steps(store, states.IN_PROGRESS, True)
    assert turn.message is not None
    await endings.give_up(run["id"], "lost three times")
    ended = await records.load(run["id"])
    assert ended is not None and ended["status"] == "failed"
    assert ended["last_error"] == {"code": "server_error", "message": "lost three times"}
    assert ended["usage"] == _USED and ended["expires_at"] is None
    assert [step["step_details"]["type"] for step in await records.run_steps(run["id"])] == [
        "tool_calls"]
    assert await _message_status(store, turn.message["id"]) is None
