"""The event bus: every change of a run is published here, and SSE streams subscribe.

An event is delivered at once to the subscribers in this process, and written to the
``run_events`` table in small batches. From there it reaches streams served by other processes
(PostgreSQL NOTIFY says which run has new events) and clients that reconnect with
``Last-Event-ID``. Event ids are time-ordered, so a stream is resumed by comparing ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, select

from vtai.server import ids
from vtai.server.runs import states
from vtai.server.store import tables
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

log = logging.getLogger("vtai.events")

# How long events gather before they are stored. On PostgreSQL other processes stream them
# from the table, so they are stored at once; on SQLite they are read back only by clients
# that resume a stream (which stores what is pending first), so larger batches cost less.
FLUSH_SECONDS = 0.01
FLUSH_SECONDS_SQLITE = 0.25
# SQLite writes in the event loop: a batch is stored this many events per transaction, and the
# loop serves other work between them, so no stream waits for the whole batch (a quarter of a
# second of 200 busy runs is about 700 events, 4-8 ms in one piece).
SQLITE_EVENTS_PER_WRITE = 128
CHANNEL = "vtai_run_events"
NOTIFY_RUNS = 200  # run ids per notification (ids are 28 characters; payloads < 8000 bytes)
WORK_CHANNEL = "vtai_work"  # a run was queued or cancelled: workers should look


@dataclass(frozen=True)
class Event:
    event: str
    data: str  # JSON
    id: str = field(default="", compare=False)

    @classmethod
    def of(cls, event: str, obj: Any) -> Event:
        return cls(event, obj if isinstance(obj, str) else orjson.dumps(obj).decode())

    @classmethod
    def stamped(cls, event: str, data: str) -> Event:
        """An event whose id (its place in the run's stream) is taken now: before the change
        it reports commits, so no event caused by that change can get an earlier id in
        another process."""
        return cls(event, data, ids.new_event_id())

    def encode(self) -> bytes:
        if self.event.startswith(INTERNAL):
            return b""
        head = f"id: {self.id}\n" if self.id else ""
        return f"{head}event: {self.event}\ndata: {self.data}\n\n".encode()

    @property
    def ends_stream(self) -> bool:
        if self.event == "error" or self.event in RESPONSE_ENDS:
            return True
        prefix = "thread.run."
        if not self.event.startswith(prefix):
            return False
        # (a failed run's stream ends with its thread.run.failed, as OpenAI's: the `error`
        # event is the server's own failure, not the run's)
        return self.event[len(prefix):] in states.PAUSING


# The two statements below ignore events stored already: a write whose outcome was not seen
# (cancelled, or its connection lost after the commit) is made again, and must not fail on its
# own rows.
_INSERT_EVENT = Sql("INSERT INTO run_events (id, run_id, event, data, created_at) "
                    "VALUES (:id, :run_id, :event, :data, :created_at) "
                    "ON CONFLICT (id) DO NOTHING")

# On PostgreSQL: a batch of events and the notifications for their runs, in one statement.
_STORE_EVENTS_PG = Sql(
    "WITH stored AS (INSERT INTO run_events (id, run_id, event, data, created_at) "
    "SELECT id, run_id, event, data, CAST(:created_at AS bigint) FROM unnest(CAST(:ids AS text[]), "
    "CAST(:run_ids AS text[]), CAST(:events AS text[]), CAST(:datas AS text[])) "
    "AS batch (id, run_id, event, data) ON CONFLICT (id) DO NOTHING RETURNING 1) "
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload")

DONE = b"event: done\ndata: [DONE]\n\n"
# Events of the server's own, which end a stream but are written to no client: a cancelled
# response's (OpenAI's stream has no event for it).
INTERNAL = "vtai."
RESPONSE_CANCELLED = "vtai.response.cancelled"
# The events that end a response's stream.
RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed",
                           RESPONSE_CANCELLED})
_WAKE = Event("", "")  # queued by Subscription.interrupt


class Subscription:
    """A run's events after ``after`` (an event id), each delivered once: handed to
    ``writer`` if it takes them (returns True), queued otherwise."""

    def __init__(self, bus: EventBus, run_id: str, after: str) -> None:
        self.bus = bus
        self.run_id = run_id
        self.after = after
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.seen: set[str] = set()
        self.writer: Callable[[Event], bool] | None = None
        self.interrupted = False

    @property
    def cursor(self) -> str:
        """Events up to here are delivered (or were before this subscription)."""
        return max(self.seen, default=self.after)

    def deliver(self, event: Event) -> None:
        if event.id > self.after and event.id not in self.seen:
            self.seen.add(event.id)
            if self.writer is None or not self.writer(event):
                self.queue.put_nowait(event)

    def take_delivered(self) -> list[Event]:
        """The events delivered and not yet read, taken out of the subscription."""
        taken = []
        while not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken

    async def next_batch(self) -> list[Event]:
        """Every queued event, up to one that ends the stream, waiting for one if none is;
        [] once interrupted. Batches let a busy stream be written in fewer sends."""
        event = await self.queue.get()
        batch = []
        while not self.interrupted:
            batch.append(event)
            if event.ends_stream or self.queue.empty():
                return batch
            event = self.queue.get_nowait()
        return []

    def interrupt(self) -> None:
        """Wake next_batch for good: it returns [] from now on."""
        self.interrupted = True
        self.queue.put_nowait(_WAKE)

    def close(self) -> None:
        subs = self.bus._subscribers.get(self.run_id)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.bus._subscribers[self.run_id]


class EventBus:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.origin = secrets.token_hex(4)  # tells this process's notifications apart
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._pending: list[tuple[str, Event]] = []
        self._flushing = asyncio.Lock()  # one flush at a time, so batches are stored in order
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._listener: Any = None
        self.on_work: Callable[[], None] = lambda: None  # the worker's wake-up, if any
        self._flush_seconds = FLUSH_SECONDS_SQLITE if db.is_sqlite else FLUSH_SECONDS

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="vtai-events-flush")
        if not self.db.is_sqlite:
            self._listener = await self.db.listen({
                CHANNEL: self._on_notify, WORK_CHANNEL: lambda _payload: self.on_work()})

    async def stop(self) -> None:
        for task in [self._flusher, *self._fetches]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.flush()
        except Exception:
            log.exception("could not store the last run events at shutdown")
        if self._listener is not None:
            await self._listener.close()

    def subscribe(self, run_id: str, after: str | None = None) -> Subscription:
        """Events of ``run_id`` published from now on, or after the event id ``after``."""
        sub = Subscription(self, run_id, ids.new_event_id() if after is None else after)
        self._subscribers[run_id].add(sub)
        return sub

    def has_subscribers(self, run_id: str) -> bool:
        """Whether a stream in this process is subscribed to ``run_id``'s events."""
        return run_id in self._subscribers

    @property
    def pending_count(self) -> int:
        """How many published events are not stored yet."""
        return len(self._pending)

    def publish(self, run_id: str, event: Event) -> Event:
        if not event.id:
            event = Event(event.event, event.data, ids.new_event_id())
        for sub in self._subscribers.get(run_id, ()):
            sub.deliver(event)
        self._pending.append((run_id, event))
        self._wake.set()
        return event

    async def history(self, run_id: str, after: str | None) -> list[Event]:
        """Stored events of a run after the id ``after``, oldest first."""
        await self.flush()  # this process's latest events too
        e = tables.run_events
        query = select(e.c.id, e.c.event, e.c.data).where(e.c.run_id == run_id)
        if after:
            query = query.where(e.c.id > after)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(e.c.id))).all()
        return [Event(row.event, row.data, row.id) for row in rows]

    async def forget_before(self, created_before: int) -> None:
        e = tables.run_events
        async with self.db.write() as conn:
            await conn.execute(delete(e).where(e.c.created_at < created_before))

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_seconds)  # gather a batch
            try:
                await self.flush()
            except Exception:
                log.exception("could not store run events; retrying")

    async def flush(self) -> None:
        """Store the pending events. A flush that starts while another is under way waits
        for it: when this returns, every event published before it was called is stored."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            stored = 0
            try:
                if self.db.is_sqlite:
                    for stored in range(0, len(batch), SQLITE_EVENTS_PER_WRITE):
                        if stored:
                            await asyncio.sleep(0)  # the loop's other work goes first
                        await self._store_sqlite(batch[stored:stored + SQLITE_EVENTS_PER_WRITE])
                else:
                    await self._store_pg(batch)
            except BaseException:
                self._pending[:0] = batch[stored:]  # what is not stored, for the next try
                raise

    async def _store_sqlite(self, events: list[tuple[str, Event]]) -> None:
        now = ids.now()
        async with self.db.write() as conn:
            await conn.sql_many(_INSERT_EVENT, [
                {"id": ev.id, "run_id": run_id, "event": ev.event, "data": ev.data,
                 "created_at": now} for run_id, ev in events])

    async def _store_pg(self, events: list[tuple[str, Event]]) -> None:
        await self.db.run(_STORE_EVENTS_PG, {
            "ids": [ev.id for _, ev in events],
            "run_ids": [run_id for run_id, _ in events],
            "events": [ev.event for _, ev in events],
            "datas": [ev.data for _, ev in events], "created_at": ids.now(),
            "channel": CHANNEL, "payloads": self._payloads(
                list(dict.fromkeys(run_id for run_id, _ in events)))})

    def _payloads(self, run_ids: list[str]) -> list[str]:
        """``origin:run,run,...`` notifications, each within PostgreSQL's 8000 bytes."""
        payloads: list[str] = []
        for start in range(0, len(run_ids), NOTIFY_RUNS):
            payloads.append(f"{self.origin}:{','.join(run_ids[start:start + NOTIFY_RUNS])}")
        return payloads

    def _on_notify(self, payload: str) -> None:
        origin, _, run_ids = payload.partition(":")
        if origin == self.origin:
            return
        for run_id in run_ids.split(","):
            if self.has_subscribers(run_id):
                task = asyncio.create_task(self._fetch_remote(run_id))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)

    async def _fetch_remote(self, run_id: str) -> None:
        subs = list(self._subscribers.get(run_id, ()))
        if not subs:
            return
        for event in await self.history(run_id, min(s.cursor for s in subs) or None):
            for sub in subs:
                sub.deliver(event)
