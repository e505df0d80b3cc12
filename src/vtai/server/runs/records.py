"""Runs, run steps and run-made messages in the database, with the events their changes emit.

A run's status changes only through ``Changes.move``: it checks the state machine and writes
with compare-and-set on the status it read, so a cancel racing with the executor is noticed.

Changes are grouped in transactions (``RunRecords.changes()``): what one moment of a run
produces (its message and step, or the end of a turn) is written at once, and the events
those writes emit are published when the transaction has committed, never before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep
from sqlalchemy import Table

from vtai.server import ids
from vtai.server.metrics import Metrics
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL, Event, EventBus
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection, Sql


class Conflict(Exception):
    """The run's stored status is no longer the one the caller read."""


@dataclass
class OpenedMessage:
    """A message the model answers in, and its message_creation step: the rows that store
    them, and their four events."""

    step: dict[str, Any]
    message: dict[str, Any]
    step_row: writes.RunRow
    message_row: writes.RunRow

    def stamped_events(self) -> list[Event]:
        """Their events, stamped now (in stream order after any stamped before)."""
        step, message = self.step_row.data, self.message_row.data
        return [Event.stamped("thread.run.step.created", step),
                Event.stamped("thread.run.step.in_progress", step),
                Event.stamped("thread.message.created", message),
                Event.stamped("thread.message.in_progress", message)]


class Changes:
    """Writes inside one transaction; their events are published after it commits. Each
    event's id is taken when its change is made, so the events of one transaction keep
    their order in the stored stream too (other processes read it by id).

    Without a connection (``RunRecords.changes(gather=True)``), saves of steps and messages
    and one move of the run are gathered instead, and made at the end in one write that
    stands or falls with the move's compare-and-set (store.writes.save)."""

    def __init__(self, records: RunRecords, conn: Connection | None) -> None:
        self.records = records
        self._conn = conn
        self.events: list[tuple[str, Event]] = []
        self.after_commit: list[Callable[[], None]] = []
        # gathered: the steps' and messages' JSON by id, and the move
        self.steps: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.guard: writes.RunWrite | None = None
        self._saved_steps: dict[str, dict[str, Any]] = {}

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise TypeError("this change needs a transaction: use changes(gather=False)")
        return self._conn

    async def _save(self, table: Table, obj: dict[str, Any]) -> str:
        if self._conn is not None:
            return await objects.save_object(self._conn, table, obj)
        data = objects.dumps(obj)
        (self.steps if table is tables.run_steps else self.messages)[obj["id"]] = data
        return data

    # runs ----------------------------------------------------------------------------------

    async def move(self, run: dict[str, Any], target: str, *,
                   lease: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        """Change a run's status (and other fields), store it, and publish the event.
        ``lease``: a worker's claim columns, for a run queued for this process's worker."""
        new, event = _moved(run, target, changes)
        data = await self._write_run(run["status"], new, lease)
        self.events.append((new["id"], Event(event.event, data, event.id)))
        if target in states.TERMINAL:
            metrics = self.records.metrics

            def count() -> None:
                metrics.runs_finished.labels(target).inc()
                metrics.run_seconds.observe(max(0, ids.now() - new["created_at"]))
            self.after_commit.append(count)
        return new

    async def _write_run(self, expected_status: str, new: dict[str, Any],
                         lease: dict[str, Any] | None = None) -> str:
        write = _run_write(expected_status, new, lease)
        wakes_workers = new["status"] in (states.QUEUED, states.CANCELLING) and lease is None
        if self._conn is None and self.guard is None and not wakes_workers:
            self.guard = write
            return write.data
        if not await writes.move_run(self.conn, write):
            raise Conflict(new["id"])
        if wakes_workers:
            await self.records.db.notify(self.conn, WORK_CHANNEL)  # workers should look
        return write.data

    # steps ---------------------------------------------------------------------------------

    async def create_step(self, run: dict[str, Any], project: str,
                          details: dict[str, Any]) -> dict[str, Any]:
        step = _new_step(run, details)
        data = await objects.insert_object(self.conn, tables.run_steps, step, project,
                                           thread_id=run["thread_id"], run_id=run["id"])
        self.events.append((run["id"], Event.stamped("thread.run.step.created", data)))
        self.events.append((run["id"], Event.stamped("thread.run.step.in_progress", data)))
        return step

    async def save_step(self, step: dict[str, Any], event: str | None = None) -> dict[str, Any]:
        """Store a step; ``event`` (completed, cancelled, ...) is published when given."""
        step = shaped(RunStep, step)
        data = await self._save(tables.run_steps, step)
        self._saved_steps[step["id"]] = step
        if event:
            self.events.append((step["run_id"], Event.stamped(f"thread.run.step.{event}", data)))
        return step

    async def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        """The run's steps as this transaction leaves them so far."""
        if self._conn is not None:
            return await _run_steps(self._conn, run_id)
        return [self._saved_steps.get(step["id"], step)
                for step in await self.records.run_steps(run_id)]

    # messages ------------------------------------------------------------------------------

    async def open_messages(self, run_id: str) -> set[str]:
        """Ids of the run's messages still in progress."""
        rows = (await self.conn.sql(_RUN_MESSAGES, {"run_id": run_id})).rows
        return {row[0] for row in rows if orjson.loads(row[1])["status"] == "in_progress"}

    async def remove_opened(self, opened: OpenedMessage) -> None:
        """Delete a message opened with its run's start and never written to, and its
        step."""
        for table, obj in ((tables.run_steps, opened.step), (tables.messages, opened.message)):
            await objects.delete_objects(self.conn, table, table.c.id == obj["id"])

    async def save_message(self, message: dict[str, Any], event: str | None = None
                           ) -> dict[str, Any]:
        message = shaped(Message, message)
        data = await self._save(tables.messages, message)
        if event:
            self.events.append((message["run_id"],
                                Event.stamped(f"thread.message.{event}", data)))
        return message


# A run's own rows, read at each of its steps: plain SQL (see store.sql.Sql).
_RUN = Sql("SELECT data FROM runs WHERE id = :run_id")
_RUN_STEPS = Sql("SELECT data FROM run_steps WHERE run_id = :run_id ORDER BY id")
_RUN_MESSAGES = Sql("SELECT id, data FROM messages WHERE run_id = :run_id")


def _moved(run: dict[str, Any], target: str, changes: dict[str, Any]
           ) -> tuple[dict[str, Any], Event]:
    """The run in its ``target`` status (checked against the state machine, its time
    stamped), and the event that reports it, its id taken now and its data to be added."""
    states.check(run["status"], target)
    new = shaped(Run, {**run, **changes, "status": target})
    stamp = states.STAMPS.get(target)
    if stamp and new.get(stamp) is None:
        new[stamp] = ids.now()
    if target in states.ENDS_EXPIRY:
        new["expires_at"] = None
    return new, Event.stamped(f"thread.run.{target}", "")


def _run_write(expected_status: str, new: dict[str, Any], lease: dict[str, Any] | None
               ) -> writes.RunWrite:
    """The compare-and-set write of a run's new state."""
    write = writes.RunWrite(new["id"], expected_status, new["status"], objects.dumps(new))
    if new["status"] in states.PAUSING:  # nothing left to execute: no lease either
        return dataclasses.replace(write, lease="clear")
    if lease is not None:
        return dataclasses.replace(write, lease="set", **lease)
    return write


def _new_step(run: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    return shaped(RunStep, {
        "id": ids.new_id("step_"), "object": "thread.run.step", "created_at": ids.now(),
        "run_id": run["id"], "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"], "type": details["type"], "status": "in_progress",
        "cancelled_at": None, "completed_at": None, "expired_at": None, "failed_at": None,
        "last_error": None, "step_details": details, "usage": None, "metadata": {},
    })


def _new_message(run: dict[str, Any], message_id: str) -> dict[str, Any]:
    return shaped(Message, {
        "id": message_id, "object": "thread.message", "created_at": ids.now(),
        "assistant_id": run["assistant_id"], "thread_id": run["thread_id"],
        "run_id": run["id"], "role": "assistant", "content": [], "attachments": [],
        "metadata": {}, "status": "in_progress", "incomplete_details": None,
        "completed_at": None, "incomplete_at": None,
    })


async def _run_steps(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    rows = (await conn.sql(_RUN_STEPS, {"run_id": run_id})).rows
    return [orjson.loads(row[0]) for row in rows]


class RunRecords:
    def __init__(self, db: Database, bus: EventBus, metrics: Metrics | None = None) -> None:
        self.db = db
        self.bus = bus
        self.metrics = metrics or Metrics()

    @asynccontextmanager
    async def changes(self, gather: bool = False) -> AsyncIterator[Changes]:
        """One transaction of run changes; its events go out once it has committed.
        ``gather``: on PostgreSQL, the changes are gathered and written at the end in one
        round trip, the steps read meanwhile in another: for a turn's end, two round trips
        instead of six. Only saves of steps and messages and one move of the run gather
        (another change needs a transaction and raises TypeError)."""
        if gather and not self.db.is_sqlite:
            changes = Changes(self, None)
            yield changes
            await self._write_gathered(changes)
        else:
            async with self.db.write() as conn:
                changes = Changes(self, conn)
                yield changes
        for run_id, event in changes.events:
            self.bus.publish(run_id, event)
        for callback in changes.after_commit:
            callback()

    async def _write_gathered(self, changes: Changes) -> None:
        if changes.guard is None and not (changes.steps or changes.messages):
            return
        if not await writes.save(self.db, changes.guard, changes.steps, changes.messages):
            assert changes.guard is not None
            raise Conflict(changes.guard.id)

    async def load(self, run_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            data = (await conn.sql(_RUN, {"run_id": run_id})).scalar()
        return None if data is None else orjson.loads(data)

    async def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await _run_steps(conn, run_id)

    # one change, one transaction -------------------------------------------------------------

    async def move(self, run: dict[str, Any], target: str, **changes: Any) -> dict[str, Any]:
        async with self.changes() as tx:
            return await tx.move(run, target, **changes)

    async def start(self, run: dict[str, Any], opened: OpenedMessage | None = None
                    ) -> dict[str, Any]:
        """queued -> in_progress: one statement, not durable at once (see
        store.writes): the turn's end (or its failure) is, and makes this
        durable too. ``opened`` (new_message): a message stored with the move, in the same
        statement, and announced after ``thread.run.in_progress``."""
        new, event = _moved(run, states.IN_PROGRESS, {})
        events = opened.stamped_events() if opened is not None else []
        write = _run_write(run["status"], new, None)
        if opened is None:
            moved = await writes.move_run_now(self.db, write)
        else:
            moved = await writes.start_with_message(self.db, write, opened.step_row,
                                                    opened.message_row)
        if not moved:
            raise Conflict(new["id"])
        self.bus.publish(new["id"], Event(event.event, write.data, event.id))
        for opened_event in events:
            self.bus.publish(new["id"], opened_event)
        return new

    async def create_step(self, run: dict[str, Any], project: str,
                          details: dict[str, Any]) -> dict[str, Any]:
        async with self.changes() as tx:
            return await tx.create_step(run, project, details)

    @staticmethod
    def new_message(run: dict[str, Any], project: str) -> OpenedMessage:
        """The message a model's text goes into, and its message_creation step, made (to be
        stored and announced by ``start`` or ``open_message``)."""
        message_id = ids.new_id("msg_")
        step = _new_step(run, {"type": "message_creation",
                               "message_creation": {"message_id": message_id}})
        message = _new_message(run, message_id)
        return OpenedMessage(step, message, *(
            writes.RunRow(obj["id"], project, obj["created_at"], objects.dumps(obj),
                          run["thread_id"], run["id"]) for obj in (step, message)))

    def open_message(self, run: dict[str, Any], project: str,
                     first: dict[str, Any] | None = None) -> OpenedMessage:
        """A new message (new_message) opened with the text's ``first`` delta if given:
        their four events (and that delta) go out at once, before the rows are stored
        (``store_opened``, which the model's next tokens wait for). So no token waits on the
        database, and a request for the message in that moment (about a millisecond) does
        not find it yet."""
        opened = self.new_message(run, project)
        for event in opened.stamped_events():
            self.bus.publish(run["id"], event)
        if first is not None:
            self.delta(run["id"], "thread.message.delta", opened.message["id"], first)
        return opened

    async def store_opened(self, opened: OpenedMessage) -> None:
        """Both rows of an opened message in one write, not durable at once: the turn's end,
        a durable write, makes it durable too. If it fails, the run fails."""
        await writes.insert_message(self.db, opened.step_row, opened.message_row)

    def delta(self, run_id: str, event: str, object_id: str, delta: dict[str, Any]) -> None:
        kind = "thread.message.delta" if event == "thread.message.delta" else \
            "thread.run.step.delta"
        self.bus.publish(run_id, Event.of(event, {"id": object_id, "object": kind,
                                                  "delta": delta}))
