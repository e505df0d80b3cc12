"""The worker: claims turns from the database and executes them, one task per turn: a run's
(the runs table) or a response's (the responses table), each kind a ``Queue`` of its own.

Work is claimed with a lease (``worker_id``, ``lease_expires_at``), renewed while it
executes; on PostgreSQL the claim uses FOR UPDATE SKIP LOCKED so several workers share the
queue. The database is the queue: work created in any process is found by polling, and work
created in this process wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Table, and_, not_, or_, select, update

from vtai.server import ids
from vtai.server.runs import response_records as responses
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL
from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.records import Conflict
from vtai.server.store import tables
from vtai.server.store.db import Database
from vtai.server.tools.code_interpreter.session_rows import SessionRows, held_elsewhere

log = logging.getLogger("vtai.runs")

POLL_SECONDS = 1.0
WATCH_SECONDS = 0.5  # how soon a cancel made in another process reaches the running task
CLAIM_BATCH = 200
RENEW_BATCH = 50  # leases renewed per transaction (each holds its rows briefly)
MAX_ATTEMPTS = 3  # a run whose worker died this often fails instead of being retried


@dataclass(frozen=True)
class Queue:
    """A kind of work: its table and the statuses that matter to a worker."""

    name: str  # "run", "response" (in logs)
    table: Table
    waiting: tuple[str, ...]  # statuses a worker takes up
    running: str  # the status while a worker executes it
    stopping: str  # a status that stops the task executing it (a cancel)
    pausing: frozenset[str]  # statuses whose move released the lease already
    resumable: frozenset[str] = frozenset()  # paused, to be queued again from outside
    # The column naming the work's code session (a run's thread): work whose session's
    # local kernel another live process holds is left to that process.
    session: str | None = None


RUNS = Queue("run", tables.runs, (states.QUEUED, states.CANCELLING), states.IN_PROGRESS,
             states.CANCELLING, states.PAUSING, frozenset({states.REQUIRES_ACTION}),
             session="thread_id")
# A response's end releases its lease in the same write (response_records.finish); a cancel
# is a status of its own, written by whoever cancels it.
RESPONSES = Queue("response", tables.responses, (responses.QUEUED,), responses.IN_PROGRESS,
                  responses.CANCELLED, frozenset(responses.TERMINAL_EVENTS))


class TurnExecutor(Protocol):
    db: Database

    async def execute(self, work_id: str, obj: dict[str, Any] | None = None,
                      project: str | None = None, ahead: ModelCall | None = None
                      ) -> str | None: ...

    async def give_up(self, work_id: str, message: str) -> None: ...

    async def sweep(self) -> None: ...

    async def send_ahead(self, obj: dict[str, Any], thread_rows: list[tuple[int, str, str]]
                         ) -> ModelCall | None: ...


class Worker:
    def __init__(self, executor: TurnExecutor, queue: Queue = RUNS,
                 max_concurrent_runs: int = 2000, shutdown_grace: float = 10.0,
                 lease_seconds: int = 30) -> None:
        self.executor = executor
        self.queue = queue
        self.db = executor.db
        self.id = f"worker_{secrets.token_hex(6)}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._interrupted: set[str] = set()
        self._adopted: dict[str, tuple[dict[str, Any], str]] = {}
        self._cleanups: set[asyncio.Future[None]] = set()
        self.max_concurrent_runs = max_concurrent_runs
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._last_renewal = 0.0
        self.shutdown_grace = shutdown_grace
        self.lease_seconds = lease_seconds

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def lease_for_new_run(self) -> dict[str, Any] | None:
        """Columns that claim a run for this worker as it is created (then ``adopt`` it), so
        a run made in this process starts without waiting for a claim; None when this
        process does not execute runs or has no room."""
        if not self.has_room():
            return None
        return {"worker_id": self.id, "lease_expires_at": ids.now() + self.lease_seconds}

    def has_room(self) -> bool:
        """Whether this process executes runs and can take one more."""
        return self.running and len(self.tasks) < self.max_concurrent_runs

    async def send_ahead(self, run: dict[str, Any],
                         thread_rows: list[tuple[int, str, str]]) -> ModelCall | None:
        """The first model call of a run this process will execute as it is created (see
        Executor.send_ahead); None if this process does not execute runs or has no room."""
        return await self.executor.send_ahead(run, thread_rows) if self.has_room() else None

    def adopt(self, run: dict[str, Any], project: str, ahead: ModelCall | None = None) -> None:
        """Execute a run created with ``lease_for_new_run``'s columns; ``ahead``: its first
        model call, sent already."""
        run_id = run["id"]
        if run_id in self.tasks:  # its last turn is still ending: this one starts after it
            if ahead is not None:
                ahead.release()
            self._adopted[run_id] = (run, project)
        else:
            self._spawn(run_id, run, project, ahead)

    def _spawn(self, run_id: str, run: dict[str, Any] | None = None,
               project: str | None = None, ahead: ModelCall | None = None) -> None:
        task = asyncio.create_task(self._execute(run_id, run, project, ahead))
        self.tasks[run_id] = task
        task.add_done_callback(functools.partial(self._task_ended, run_id, ahead))

    def _task_ended(self, run_id: str, ahead: ModelCall | None, task: asyncio.Task[None]
                   ) -> None:
        """When a run's task ends: a model call sent ahead that its turn did not read is
        released. A task cancelled before its first step (a cancel right after the run was
        made) never ran ``_execute``'s cleanup: release the run, so the loop finishes its
        cancel."""
        if ahead is not None:
            ahead.release()  # (nothing to do once the run's turn read its answer)
        if self.tasks.get(run_id) is task:
            del self.tasks[run_id]
            self._interrupted.discard(run_id)
            cleanup = asyncio.ensure_future(self._release(run_id))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            cleanup.add_done_callback(lambda _: self.wake())

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="vtai-worker")
        self._watch_task = asyncio.create_task(self._watch(), name="vtai-worker-watch")

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, run_id: str) -> bool:
        """Stop this process's task for a run (its stored status says why); False if none."""
        task = self.tasks.get(run_id)
        if task is None or task.done():
            return False
        if run_id not in self._interrupted:  # once: the task then finishes the run's ending
            self._interrupted.add(run_id)
            task.cancel()
        return True

    async def stop(self) -> None:
        """Stop taking runs; let running ones finish within the grace period, then hand the
        rest back (their lease expires at once, so another worker resumes them)."""
        for task in (self._loop_task, self._watch_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running = list(self.tasks.values())
        if running:
            await asyncio.wait(running, timeout=self.shutdown_grace)
        unfinished = [t for t in running if not t.done()]
        handed_back = [run_id for run_id, t in self.tasks.items() if not t.done()]
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        await self._hand_back(handed_back)

    async def _loop(self) -> None:
        while True:
            try:
                # cleared before the claim: a wake-up during it is not lost
                self._wake.clear()
                claimed = await self._claim()
                for run_id in claimed:
                    log.info("%s claimed %s %s", self.id, self.queue.name, run_id)
                    self._spawn(run_id)
                if time.monotonic() - self._last_sweep > POLL_SECONDS:
                    self._last_sweep = time.monotonic()
                    await self.executor.sweep()
                if len(claimed) < CLAIM_BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker loop error; retrying")
                await asyncio.sleep(POLL_SECONDS)

    async def _claim(self) -> list[str]:
        room = self.max_concurrent_runs - len(self.tasks)
        if room <= 0:
            return []
        r, running = self.queue.table, self.queue.running
        now = ids.now()
        claimable = or_(
            and_(r.c.status.in_(self.queue.waiting),
                 or_(r.c.lease_expires_at.is_(None), r.c.lease_expires_at < now)),
            # in progress under a lease nobody renews: its worker died or was stopped
            and_(r.c.status == running, r.c.lease_expires_at < now),
        )
        if self.queue.session is not None:
            claimable = and_(claimable, not_(held_elsewhere(r.c[self.queue.session], now)))
        async with self.db.write() as conn:
            query = select(r.c.id, r.c.status, r.c.attempt).where(claimable).order_by(
                r.c.id).limit(min(room, CLAIM_BATCH)).with_for_update(skip_locked=True)
            rows = [row for row in (await conn.execute(query)).all()
                    if row.id not in self.tasks]
            lease = {"worker_id": self.id, "lease_expires_at": now + self.lease_seconds}
            fresh = [row.id for row in rows if row.status != running]
            if fresh:
                await conn.execute(update(r).where(r.c.id.in_(fresh)).values(**lease))
            for row in rows:
                if row.status == running:  # its worker was lost: count attempts
                    await conn.execute(update(r).where(r.c.id == row.id).values(
                        **lease, attempt=row.attempt + 1))
        claimed = []
        for row in rows:
            if row.status == running and row.attempt + 1 > MAX_ATTEMPTS:
                await self._give_up(row.id)
            else:
                claimed.append(row.id)
        return claimed

    async def _give_up(self, run_id: str) -> None:
        with contextlib.suppress(Conflict):
            await self.executor.give_up(
                run_id, f"The {self.queue.name} was interrupted {MAX_ATTEMPTS} times (its "
                        "worker stopped) and was not retried again.")
        await self._release(run_id)

    async def _execute(self, run_id: str, run: dict[str, Any] | None = None,
                       project: str | None = None, ahead: ModelCall | None = None) -> None:
        status = None
        try:
            if await self._held_elsewhere(run):
                await self._pass_on(run_id)
                return
            status = await self.executor.execute(run_id, run, project, ahead)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s: executor error", self.queue.name, run_id)
        finally:
            self.tasks.pop(run_id, None)
            self._interrupted.discard(run_id)
            if status not in self.queue.pausing:  # a pausing move released the lease
                await self._release(run_id)
            if run_id in self._adopted:  # tool outputs came while the turn was ending
                self.adopt(*self._adopted.pop(run_id))
            elif status is None or status in self.queue.resumable:
                # The run may be queued again already, by another process.
                self.wake()

    async def _held_elsewhere(self, run: dict[str, Any] | None) -> bool:
        """Whether a run made in this process uses the code interpreter on a session whose
        kernel another live process holds (claims leave such runs to it already)."""
        if run is None or self.queue.session is None or not any(
                tool.get("type") == "code_interpreter" for tool in run.get("tools") or []):
            return False
        return await SessionRows(self.db).held_elsewhere(run[self.queue.session])

    async def _pass_on(self, run_id: str) -> None:
        """Release a run for the process that holds its session's kernel, and wake it."""
        r = self.queue.table
        log.info("%s passes %s %s on to the worker holding its code session", self.id,
                 self.queue.name, run_id)
        async with self.db.write() as conn:
            await conn.execute(update(r).where(r.c.id == run_id, r.c.worker_id == self.id)
                               .values(worker_id=None, lease_expires_at=None))
            await self.db.notify(conn, WORK_CHANNEL)

    async def _release(self, run_id: str) -> None:
        r = self.queue.table
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.id == run_id, r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))

    async def _hand_back(self, run_ids: list[str]) -> None:
        r = self.queue.table
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))
                if run_ids:  # expired at once: another worker resumes them
                    await conn.execute(update(r).where(r.c.id.in_(run_ids))
                                       .values(lease_expires_at=0))

    async def _watch(self) -> None:
        """Renew leases, and interrupt work cancelled from another process."""
        r = self.queue.table
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            running = list(self.tasks)
            if not running:
                continue
            try:
                async with self.db.read() as conn:
                    cancelled = (await conn.execute(select(r.c.id).where(
                        r.c.id.in_(running), r.c.status == self.queue.stopping))).scalars().all()
                for run_id in cancelled:
                    self.interrupt(run_id)
                if time.monotonic() - self._last_renewal > self.lease_seconds / 3:
                    self._last_renewal = time.monotonic()
                    await self.renew_leases()
            except Exception:
                log.exception("worker watch error; retrying")

    async def renew_leases(self) -> None:
        """Extend the leases of the runs this worker executes, RENEW_BATCH runs per
        transaction. A run whose row another transaction holds (its own step being written)
        is passed over, not waited for: the renewal then never holds the other rows' locks
        while it waits, which would hold up every run among them at its next write."""
        running = list(self.tasks)
        r = self.queue.table
        until = ids.now() + self.lease_seconds
        for start in range(0, len(running), RENEW_BATCH):
            free = select(r.c.id).where(r.c.worker_id == self.id,
                                        r.c.id.in_(running[start:start + RENEW_BATCH]))
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.id.in_(
                    free.with_for_update(skip_locked=True)))
                    .values(lease_expires_at=until))
