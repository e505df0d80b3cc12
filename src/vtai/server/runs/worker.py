"""The worker: claims runs from the database and executes them, one task per run.

Runs are claimed with a lease (``worker_id``, ``lease_expires_at``), renewed while the run
executes; on PostgreSQL the claim uses FOR UPDATE SKIP LOCKED so several workers share the
queue. The database is the queue: a run created in any process is found by polling, and a
run created in this process wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update

from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.executor import Executor
from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.records import Conflict
from vtai.server.store import tables

log = logging.getLogger("vtai.runs")

POLL_SECONDS = 1.0
WATCH_SECONDS = 0.5  # how soon a cancel made in another process reaches the running task
CLAIM_BATCH = 200
RENEW_BATCH = 50  # leases renewed per transaction (each holds its rows briefly)
MAX_ATTEMPTS = 3  # a run whose worker died this often fails instead of being retried
EVENTS_KEPT_SECONDS = 3600  # how long a stream can be resumed (Last-Event-ID)


class Worker:
    def __init__(self, executor: Executor, max_concurrent_runs: int = 2000,
                 shutdown_grace: float = 10.0, lease_seconds: int = 30) -> None:
        self.executor = executor
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
        self._last_cleanup = 0.0
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
                    log.info("%s claimed run %s", self.id, run_id)
                    self._spawn(run_id)
                if time.monotonic() - self._last_sweep > POLL_SECONDS:
                    self._last_sweep = time.monotonic()
                    await self._expire_waiting_runs()
                if time.monotonic() - self._last_cleanup > EVENTS_KEPT_SECONDS / 60:
                    self._last_cleanup = time.monotonic()
                    await self.executor.records.bus.forget_before(
                        ids.now() - EVENTS_KEPT_SECONDS)
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
        r = tables.runs
        now = ids.now()
        claimable = or_(
            and_(r.c.status.in_((states.QUEUED, states.CANCELLING)),
                 or_(r.c.lease_expires_at.is_(None), r.c.lease_expires_at < now)),
            # in progress under a lease nobody renews: its worker died or was stopped
            and_(r.c.status == states.IN_PROGRESS, r.c.lease_expires_at < now),
        )
        async with self.db.write() as conn:
            query = select(r.c.id, r.c.status, r.c.attempt).where(claimable).order_by(
                r.c.id).limit(min(room, CLAIM_BATCH)).with_for_update(skip_locked=True)
            rows = [row for row in (await conn.execute(query)).all()
                    if row.id not in self.tasks]
            lease = {"worker_id": self.id, "lease_expires_at": now + self.lease_seconds}
            fresh = [row.id for row in rows if row.status != states.IN_PROGRESS]
            if fresh:
                await conn.execute(update(r).where(r.c.id.in_(fresh)).values(**lease))
            for row in rows:
                if row.status == states.IN_PROGRESS:  # its worker was lost: count attempts
                    await conn.execute(update(r).where(r.c.id == row.id).values(
                        **lease, attempt=row.attempt + 1))
        claimed = []
        for row in rows:
            if row.status == states.IN_PROGRESS and row.attempt + 1 > MAX_ATTEMPTS:
                await self._give_up(row.id)
            else:
                claimed.append(row.id)
        return claimed

    async def _give_up(self, run_id: str) -> None:
        with contextlib.suppress(Conflict):
            await self.executor.give_up(
                run_id, f"The run was interrupted {MAX_ATTEMPTS} times (its worker stopped) "
                        "and was not retried again.")
        await self._release(run_id)

    async def _execute(self, run_id: str, run: dict[str, Any] | None = None,
                       project: str | None = None, ahead: ModelCall | None = None) -> None:
        status = None
        try:
            status = await self.executor.execute(run_id, run, project, ahead)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: executor error", run_id)
        finally:
            self.tasks.pop(run_id, None)
            self._interrupted.discard(run_id)
            if status not in states.PAUSING:  # a pausing move released the lease already
                await self._release(run_id)
            if run_id in self._adopted:  # tool outputs came while the turn was ending
                self.adopt(*self._adopted.pop(run_id))
            elif status is None or status == states.REQUIRES_ACTION:
                # The run may be queued again already, by another process.
                self.wake()

    async def _release(self, run_id: str) -> None:
        r = tables.runs
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.id == run_id, r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))

    async def _hand_back(self, run_ids: list[str]) -> None:
        r = tables.runs
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))
                if run_ids:  # expired at once: another worker resumes them
                    await conn.execute(update(r).where(r.c.id.in_(run_ids))
                                       .values(lease_expires_at=0))

    async def _watch(self) -> None:
        """Renew leases, and interrupt runs cancelled from another process."""
        r = tables.runs
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            running = list(self.tasks)
            if not running:
                continue
            try:
                async with self.db.read() as conn:
                    cancelled = (await conn.execute(select(r.c.id).where(
                        r.c.id.in_(running), r.c.status == states.CANCELLING))).scalars().all()
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
        r = tables.runs
        until = ids.now() + self.lease_seconds
        for start in range(0, len(running), RENEW_BATCH):
            free = select(r.c.id).where(r.c.worker_id == self.id,
                                        r.c.id.in_(running[start:start + RENEW_BATCH]))
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.id.in_(
                    free.with_for_update(skip_locked=True)))
                    .values(lease_expires_at=until))

    async def _expire_waiting_runs(self) -> None:
        r = tables.runs
        async with self.db.read() as conn:
            rows = (await conn.execute(select(r.c.data).where(
                r.c.status == states.REQUIRES_ACTION))).scalars().all()
        now = ids.now()
        for data in rows:
            run: dict[str, Any] = orjson.loads(data)
            if run.get("expires_at") and run["expires_at"] <= now:
                with contextlib.suppress(Conflict):
                    await self.executor.expire(run)
