"""How a turn's message, its steps and the run end: completed, incomplete, failed, cancelled,
expired, or given up after lost workers. A run's usage is always its steps' together."""

from __future__ import annotations

import logging
from typing import Any

from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.model_call import RunFailure
from vtai.server.runs.records import Changes, RunRecords
from vtai.server.runs.turn_state import Turn
from vtai.server.store import objects, tables
from vtai.server.tools.base import BuiltinTool

log = logging.getLogger("vtai.runs")

_STAMPS = {"cancelled": "cancelled_at", "failed": "failed_at", "expired": "expired_at"}


def _step_error(error: dict[str, str] | None) -> dict[str, str] | None:
    """A run's last_error as its steps' (whose codes are server_error and
    rate_limit_exceeded only)."""
    if error is None or error["code"] in ("server_error", "rate_limit_exceeded"):
        return error
    return {**error, "code": "server_error"}


def sum_usage(usages: list[dict[str, int] | None]) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in usages:
        for key in total:
            total[key] += int((usage or {}).get(key) or 0)
    return total


class Endings:
    def __init__(self, records: RunRecords, builtins: dict[str, BuiltinTool]) -> None:
        self.records = records
        self.builtins = builtins

    # the turn's message --------------------------------------------------------------------

    async def complete_message(self, tx: Changes, run_id: str, turn: Turn,
                               status: str = "completed",
                               incomplete: dict[str, str] | None = None,
                               usage: dict[str, int] | None = None) -> None:
        """End the turn's message (``status``) and complete its step (with ``usage``: the
        model call's when it only wrote the message)."""
        if turn.message is not None:
            await self._close_message(tx, turn, status, incomplete, run_id)
        if turn.message_step is not None:
            turn.message_step.update(status="completed", completed_at=ids.now(), usage=usage)
            await tx.save_step(turn.message_step, "completed")

    async def _close_message(self, tx: Changes, turn: Turn, status: str,
                             incomplete: dict[str, str] | None, run_id: str) -> None:
        """Store the turn's message as it ends. What the built-in tools add to it (citations,
        files) is streamed first, as a delta of the parts it adds to."""
        assert turn.message is not None
        now = ids.now()
        annotations: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for tool_type, calls in turn.builtin_calls.items():
            if tool_type in self.builtins:
                added = self.builtins[tool_type].message_additions(turn.text, calls)
                annotations += added.annotations
                parts += added.parts
        turn.builtin_calls = {}
        # the text first: it streamed as content index 0 (none streamed: no text part,
        # unless the answer completed with nothing at all: then an empty one)
        text = [{"type": "text", "text": {"value": turn.text, "annotations": annotations}}] \
            if turn.text or annotations or (status == "completed" and not parts) else []
        added_parts = [{"index": index, **part} for index, part in enumerate(parts, len(text))]
        if annotations:  # (value "": handlers print delta.value)
            added_parts.insert(0, {"index": 0, "type": "text", "text": {
                "value": "", "annotations": [{"index": index, **annotation}
                                             for index, annotation in enumerate(annotations)]}})
        if added_parts:
            self.records.delta(run_id, "thread.message.delta", turn.message["id"],
                               {"content": added_parts})
        turn.message.update(
            content=[*text, *parts],
            status=status, incomplete_details=incomplete,
            completed_at=now if status == "completed" else None,
            incomplete_at=now if status == "incomplete" else None,
        )
        turn.message = await tx.save_message(turn.message, status)

    # the run ---------------------------------------------------------------------------------

    async def end(self, tx: Changes, run: dict[str, Any], status: str, turn: Turn,
                  **changes: Any) -> None:
        """The turn's end in ``status`` (completed, incomplete), with the run's usage."""
        steps = list(turn.steps.values()) if turn.steps is not None else \
            await tx.run_steps(run["id"])
        usages = [s.get("usage") for s in steps]
        if turn.message_step is None and turn.tool_step is None:
            usages.append(turn.usage)
        await tx.move(run, status, usage=sum_usage(usages), required_action=None, **changes)

    async def close_open_objects(self, tx: Changes, run_id: str, turn: Turn,
                                 step_status: str, reason: str,
                                 error: dict[str, str] | None = None) -> dict[str, int]:
        """End the turn's message and every step of the run still in progress (after
        Turn.stored: what the turn's message write stored is then closed). The run's usage:
        its steps' together."""
        if turn.untouched is not None:
            # The model never began its answer: its message (announced early) and the step
            # go, no event closes them, and nothing stored is left of it (as of OpenAI's).
            await tx.remove_opened(turn.untouched)
            if turn.steps is not None:
                turn.steps.pop(turn.untouched.step["id"], None)
            turn.untouched = turn.message = turn.message_step = None
        # What is stored decides (a transaction that failed may have changed the turn's copy).
        if turn.message is not None and turn.message["id"] in await tx.open_messages(run_id):
            await self._close_message(tx, turn, "incomplete", {"reason": reason}, run_id)
        if turn.tool_step is not None and turn.calls:
            turn.tool_step["step_details"]["tool_calls"] = turn.step_calls()
        steps = {s["id"]: s for s in await tx.run_steps(run_id)}
        for step in (turn.message_step, turn.tool_step):
            if step is not None and step["id"] in steps \
                    and steps[step["id"]]["status"] == "in_progress":
                steps[step["id"]] = step  # the turn's copy holds what streamed
        for step in steps.values():
            if step["status"] == "in_progress":
                step.update(status=step_status, last_error=_step_error(error))
                step[_STAMPS[step_status]] = ids.now()
                await tx.save_step(step, step_status)
        return sum_usage([s.get("usage") for s in steps.values()])

    async def after_interrupt(self, run_id: str, turn: Turn) -> str | None:
        """The run changed under the turn (a cancel): end it as its stored status says."""
        run = await self.records.load(run_id)
        if run is not None and run["status"] == states.CANCELLING:
            return await self.cancel(run, turn)
        return None if run is None else str(run["status"])

    async def cancel(self, run: dict[str, Any], turn: Turn) -> str:
        """cancelling -> cancelled, with what the turn had open."""
        await turn.stored(whatever_came=True)
        async with self.records.changes() as tx:
            usage = await self.close_open_objects(tx, run["id"], turn, "cancelled",
                                                  "run_cancelled")
            await tx.move(run, states.CANCELLED, required_action=None, usage=usage)
        return states.CANCELLED

    async def expire(self, run: dict[str, Any]) -> None:
        """A run left waiting for tool outputs past ``expires_at``."""
        async with self.records.changes() as tx:
            usage = await self.close_open_objects(tx, run["id"], Turn(), "expired",
                                                  "run_expired")
            await tx.move(run, states.EXPIRED, required_action=None, usage=usage)

    async def fail(self, run_id: str, turn: Turn, failure: RunFailure) -> str | None:
        """The run fails with ``failure`` as its last_error (a run being cancelled is
        cancelled instead); the status it was left in."""
        error = {"code": failure.code, "message": failure.message}
        run = await self.records.load(run_id)
        if run is None:
            return None
        if run["status"] == states.CANCELLING:
            return await self.cancel(run, turn)
        if not states.can_move(run["status"], states.FAILED):
            return str(run["status"])
        await turn.stored(whatever_came=True)
        async with self.records.changes() as tx:
            usage = await self.close_open_objects(tx, run_id, turn, "failed", "run_failed",
                                                  error)
            await tx.move(run, states.FAILED, last_error=error, required_action=None,
                          usage=usage)
        return states.FAILED

    async def discard_lost_attempt(self, run: dict[str, Any]) -> None:
        """Remove what a dead worker left half made (unfinished messages and steps), so the
        turn runs again without duplicating them. Finished steps stay: they are durable."""
        m, s = tables.messages, tables.run_steps
        log.warning("run %s: resuming after its worker was lost", run["id"])
        async with self.records.changes() as tx:
            unfinished = [step["id"] for step in await tx.run_steps(run["id"])
                          if step["status"] == "in_progress"]
            if unfinished:
                await objects.delete_objects(tx.conn, s, s.c.id.in_(unfinished))
            partial = await tx.open_messages(run["id"])
            if partial:
                await objects.delete_objects(tx.conn, m, m.c.id.in_(partial))

    async def give_up(self, run_id: str, message: str) -> None:
        """Fail a run whose workers were lost too many times, without what the last one
        left half made."""
        run = await self.records.load(run_id)
        if run is not None and run["status"] == states.IN_PROGRESS:
            await self.discard_lost_attempt(run)
            await self.fail(run_id, Turn(), RunFailure("server_error", message))
