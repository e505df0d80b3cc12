"""What this process knows of threads and assistants, so that a run's first model call can
leave before the run-start read answers (api/runs.create_run).

On PostgreSQL the run-start read (the assistant, the thread's messages) is a round trip to
another process, and under load its wait for a core is the longest step before the model
request can leave. A thread created in this process, with the messages added to it here
since, is known without reading it: the run's model call is sent from what is known, the read
is made as before, and the call is kept only if the read found exactly what was known (else
it is released and sent again from what was read). What is known is only a guess; the read
stays the rule.

A guess that proves wrong costs a model request given up as soon as it was sent. So guesses
are made only while this is the only server process on the database (another process could
change a thread unseen): each process holds a shared advisory lock on its listening
connection for its whole life, and the watch counts the other holders every
``WATCH_SECONDS`` (and checks that this process is still seen among them).
On SQLite the read is made in this process and costs little: nothing is guessed there.

A thread is known from its creation until a run starts on it (its run changes it: from then
on it is read), within a bound on entries and on the characters of their messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import NamedTuple

from vtai.server.metrics import Metrics
from vtai.server.store.db import Database

log = logging.getLogger("vtai.runs")

WATCH_SECONDS = 1.0
MAX_THREADS = 10_000
MAX_CHARS = 32 * 1024 * 1024  # of the known threads' message JSON
MAX_ASSISTANTS = 1_000

Row = tuple[int, str, str]  # queries.THREAD_ROWS: (kind, id, data)


class Known(NamedTuple):
    assistant: str  # the assistant's JSON as stored
    rows: list[Row]  # the thread's rows as queries.THREAD_ROWS gives them


class _Thread(NamedTuple):
    project: str
    rows: list[Row]
    size: int


class Adding(NamedTuple):
    """A known thread a message is being added to (KnownThreads.adding_message)."""

    thread_id: str
    known: _Thread


class KnownThreads:
    def __init__(self, db: Database, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics
        self.alone = False  # this is the only server process on the database (see watch)
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._assistants: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._adding: dict[str, Adding] = {}  # messages being added to known threads
        self._chars = 0
        self._watch: asyncio.Task[None] | None = None

    @property
    def guessing(self) -> bool:
        """Whether runs may start from what is known (PostgreSQL, this process alone)."""
        return self.alone and not self.db.is_sqlite

    def start(self) -> None:
        if not self.db.is_sqlite:
            self._watch = asyncio.create_task(self._watch_loop(), name="vtai-known-threads")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _watch_loop(self) -> None:
        while True:
            try:
                seen, others = await self.db.presence()
            except Exception:
                log.exception("counting the server processes failed; retrying")
                seen, others = False, 0
            alone = seen and not others
            if alone != self.alone:
                log.info("runs start %s", "from known threads (the only server process)"
                         if alone else "after reading their threads ("
                         + (f"{others} other server processes)" if others else
                            "this process's presence on the database is not seen)"))
            self.alone = alone
            if not alone:
                self._forget_all()
            await asyncio.sleep(WATCH_SECONDS)

    # ------------------------------------------------------------------ what is known

    def thread_made(self, thread_id: str, project: str, rows: list[Row]) -> None:
        """A thread this process stored, with its messages."""
        if self.guessing:
            self._put(thread_id, _Thread(project, sorted(rows), sum(len(r[2]) for r in rows)))

    def adding_message(self, thread_id: str) -> Adding | None:
        """A message is being stored on the thread: what was known of it, if anything, taken
        out meanwhile (a run starting on it then reads it); ``message_added`` puts it back
        with the message once stored, unless the thread changed otherwise meanwhile."""
        known = self.forget_thread(thread_id)
        if known is None:
            return None
        adding = self._adding[thread_id] = Adding(thread_id, known)
        return adding

    def message_added(self, adding: Adding | None, row: Row) -> None:
        """The message of ``adding_message`` was stored."""
        if adding is None or self._adding.get(adding.thread_id) is not adding:
            return
        del self._adding[adding.thread_id]
        if self.guessing:
            known = adding.known
            self._put(adding.thread_id, _Thread(known.project, sorted([*known.rows, row]),
                                                known.size + len(row[2])))

    def forget_thread(self, thread_id: str) -> _Thread | None:
        """A thread changed in a way not followed here (a message modified or deleted, the
        thread deleted, a run started on it): what was known of it. A message being added
        to it (adding_message) then does not make it known again."""
        self._adding.pop(thread_id, None)
        known = self._threads.pop(thread_id, None)
        if known is not None:
            self._chars -= known.size
        return known

    def assistant_read(self, assistant_id: str, project: str, data: str) -> None:
        """An assistant as a run start read it."""
        if self.guessing:
            self._assistants[assistant_id] = (project, data)
            self._assistants.move_to_end(assistant_id)
            while len(self._assistants) > MAX_ASSISTANTS:
                self._assistants.popitem(last=False)

    def forget_assistant(self, assistant_id: str) -> None:
        """An assistant modified or deleted."""
        self._assistants.pop(assistant_id, None)

    def run_starts(self, thread_id: str, assistant_id: str, project: str) -> Known | None:
        """A run starts on the thread: what is known of it and of the assistant, if both are
        and guesses are made; the thread is forgotten either way."""
        thread = self.forget_thread(thread_id)
        if thread is None:
            return None
        assistant = self._assistants.get(assistant_id)
        if not self.guessing or thread.project != project or assistant is None \
                or assistant[0] != project:
            return None
        return Known(assistant[1], thread.rows)

    def confirmed(self, known: Known, assistant: str | None, rows: list[Row] | None,
                  active_run: str | None) -> bool:
        """Whether the run-start read found what was known (the assistant, the thread's
        rows, no active run): the guess stands; counted in the metrics either way."""
        right = active_run is None and known == (assistant, rows)
        self.metrics.guessed_starts.labels("right" if right else "wrong").inc()
        return right

    def _put(self, thread_id: str, thread: _Thread) -> None:
        self.forget_thread(thread_id)
        if thread.size > MAX_CHARS:
            return
        self._threads[thread_id] = thread
        self._chars += thread.size
        while len(self._threads) > MAX_THREADS or self._chars > MAX_CHARS:
            _, oldest = self._threads.popitem(last=False)
            self._chars -= oldest.size

    def _forget_all(self) -> None:
        self._threads.clear()
        self._adding.clear()
        self._assistants.clear()
        self._chars = 0
