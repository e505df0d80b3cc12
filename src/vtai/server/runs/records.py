"""Runs, run steps and run-made messages in the database, with the events their changes emit.

A run's status changes only through ``RunRecords.move``: it checks the state machine and writes
with compare-and-set on the status it read, so a cancel racing with the executor is noticed.
"""

from __future__ import annotations

from typing import Any

import orjson
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep
from sqlalchemy import select, update

from vtai.server import ids
from vtai.server.api.common import shaped
from vtai.server.metrics import Metrics
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL, Event, EventBus
from vtai.server.store import objects, tables
from vtai.server.store.db import Database


class Conflict(Exception):
    """The run's stored status is no longer the one the caller read."""


class RunRecords:
    def __init__(self, db: Database, bus: EventBus, metrics: Metrics | None = None) -> None:
        self.db = db
        self.bus = bus
        self.metrics = metrics or Metrics()

    # runs ----------------------------------------------------------------------------------

    async def load(self, run_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            data = (await conn.execute(
                select(tables.runs.c.data).where(tables.runs.c.id == run_id))).scalar()
        return None if data is None else orjson.loads(data)

    async def move(self, run: dict[str, Any], target: str, **changes: Any) -> dict[str, Any]:
        """Change a run's status (and other fields), store it, and publish the event."""
        states.check(run["status"], target)
        new = shaped(Run, {**run, **changes, "status": target})
        stamp = states.STAMPS.get(target)
        if stamp and new.get(stamp) is None:
            new[stamp] = ids.now()
        event = Event.stamped(f"thread.run.{target}", "")
        data = await self._write_run(run["status"], new)
        self.bus.publish(new["id"], Event(event.event, data, event.id))
        if target in states.TERMINAL:
            self.metrics.runs_finished.labels(target).inc()
            self.metrics.run_seconds.observe(max(0, ids.now() - new["created_at"]))
        if target == states.FAILED:
            error = new.get("last_error") or {}
            self.bus.publish(new["id"], Event.of("error", {"error": {
                "message": error.get("message", "The run failed."),
                "type": "server_error", "param": None, "code": error.get("code"),
            }}))
        return new

    async def save(self, run: dict[str, Any]) -> dict[str, Any]:
        """Store fields of a run whose status does not change (usage, for instance)."""
        new = shaped(Run, run)
        await self._write_run(run["status"], new)
        return new

    async def _write_run(self, expected_status: str, new: dict[str, Any]) -> str:
        data = objects.dumps(new)
        r = tables.runs
        async with self.db.write() as conn:
            result = await conn.execute(
                update(r).where(r.c.id == new["id"], r.c.status == expected_status)
                .values(data=data, status=new["status"]))
            if not result.rowcount:
                raise Conflict(new["id"])
            if new["status"] in (states.QUEUED, states.CANCELLING):
                await self.db.notify(conn, WORK_CHANNEL)
        return data

    # steps ---------------------------------------------------------------------------------

    async def create_step(self, run: dict[str, Any], project: str,
                          details: dict[str, Any]) -> dict[str, Any]:
        step = shaped(RunStep, {
            "id": ids.new_id("step_"), "object": "thread.run.step", "created_at": ids.now(),
            "run_id": run["id"], "assistant_id": run["assistant_id"],
            "thread_id": run["thread_id"], "type": details["type"], "status": "in_progress",
            "cancelled_at": None, "completed_at": None, "expired_at": None, "failed_at": None,
            "last_error": None, "step_details": details, "usage": None, "metadata": {},
        })
        async with self.db.write() as conn:
            data = await objects.insert_object(conn, tables.run_steps, step, project,
                                               thread_id=run["thread_id"], run_id=run["id"])
        self.bus.publish(run["id"], Event("thread.run.step.created", data))
        self.bus.publish(run["id"], Event("thread.run.step.in_progress", data))
        return step

    async def save_step(self, step: dict[str, Any], event: str | None = None) -> dict[str, Any]:
        """Store a step; ``event`` (completed, cancelled, ...) is published when given."""
        step = shaped(RunStep, step)
        async with self.db.write() as conn:
            data = await objects.save_object(conn, tables.run_steps, step)
        if event:
            self.bus.publish(step["run_id"], Event(f"thread.run.step.{event}", data))
        return step

    async def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        s = tables.run_steps
        async with self.db.read() as conn:
            rows = (await conn.execute(
                select(s.c.data).where(s.c.run_id == run_id).order_by(s.c.id))).scalars()
            return [orjson.loads(row) for row in rows]

    # messages ------------------------------------------------------------------------------

    async def create_message(self, run: dict[str, Any], project: str) -> dict[str, Any]:
        message = shaped(Message, {
            "id": ids.new_id("msg_"), "object": "thread.message", "created_at": ids.now(),
            "assistant_id": run["assistant_id"], "thread_id": run["thread_id"],
            "run_id": run["id"], "role": "assistant", "content": [], "attachments": [],
            "metadata": {}, "status": "in_progress", "incomplete_details": None,
            "completed_at": None, "incomplete_at": None,
        })
        async with self.db.write() as conn:
            data = await objects.insert_object(
                conn, tables.messages, message, project, thread_id=run["thread_id"],
                run_id=run["id"])
        self.bus.publish(run["id"], Event("thread.message.created", data))
        self.bus.publish(run["id"], Event("thread.message.in_progress", data))
        return message

    async def save_message(self, message: dict[str, Any], event: str | None = None
                           ) -> dict[str, Any]:
        message = shaped(Message, message)
        async with self.db.write() as conn:
            data = await objects.save_object(conn, tables.messages, message)
        if event:
            self.bus.publish(message["run_id"], Event(f"thread.message.{event}", data))
        return message

    def delta(self, run_id: str, event: str, object_id: str, delta: dict[str, Any]) -> None:
        kind = "thread.message.delta" if event == "thread.message.delta" else \
            "thread.run.step.delta"
        self.bus.publish(run_id, Event.of(event, {"id": object_id, "object": kind,
                                                  "delta": delta}))
