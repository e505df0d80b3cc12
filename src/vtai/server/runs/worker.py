"""The worker: claims runs from the database and executes them, one task per run.

Runs are claimed with a lease (``worker_id``, ``lease_expires_at``), renewed while the run
executes; on PostgreSQL the claim uses FOR UPDATE SKIP LOCKED so several workers share the
queue. The database is the queue: a run created in any process is found by polling, and a
run created in this process wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update

from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.executor import Executor
from vtai.server.runs.records import Conflict
from vtai.server.store import tables

log = logging.getLogger("vtai.runs")

LEASE_SECONDS = 60
POLL_SECONDS = 1.0
CLAIM_BATCH = 50


class Worker:
    def __init__(self, executor: Executor, max_concurrent_runs: int = 2000) -> None:
        self.executor = executor
        self.db = executor.db
        self.id = f"worker_{secrets.token_hex(6)}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.max_concurrent_runs = max_concurrent_runs
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="vtai-worker")

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, run_id: str) -> bool:
        """Stop this process's task for a run (its stored status says why); False if none."""
        task = self.tasks.get(run_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._release_all()

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self._claim()
                for run_id in claimed:
                    self.tasks[run_id] = asyncio.create_task(self._execute(run_id))
                if time.monotonic() - self._last_sweep > POLL_SECONDS:
                    self._last_sweep = time.monotonic()
                    await self._renew_leases()
                    await self._expire_waiting_runs()
                if len(claimed) < CLAIM_BATCH:
                    self._wake.clear()
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
        claimable = and_(
            r.c.status.in_((states.QUEUED, states.CANCELLING)),
            or_(r.c.lease_expires_at.is_(None), r.c.lease_expires_at < now),
        )
        async with self.db.write() as conn:
            query = select(r.c.id).where(claimable).order_by(r.c.id).limit(
                min(room, CLAIM_BATCH)).with_for_update(skip_locked=True)
            run_ids = [i for i in (await conn.execute(query)).scalars() if i not in self.tasks]
            if run_ids:
                await conn.execute(update(r).where(r.c.id.in_(run_ids)).values(
                    worker_id=self.id, lease_expires_at=now + LEASE_SECONDS))
        return run_ids

    async def _execute(self, run_id: str) -> None:
        try:
            await self.executor.execute(run_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: executor error", run_id)
        finally:
            self.tasks.pop(run_id, None)
            await self._release(run_id)
            # The run may be queued again already (tool outputs came quickly).
            self.wake()

    async def _release(self, run_id: str) -> None:
        r = tables.runs
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.id == run_id, r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))

    async def _release_all(self) -> None:
        r = tables.runs
        with contextlib.suppress(Exception):
            async with self.db.write() as conn:
                await conn.execute(update(r).where(r.c.worker_id == self.id)
                                   .values(worker_id=None, lease_expires_at=None))

    async def _renew_leases(self) -> None:
        if not self.tasks:
            return
        r = tables.runs
        async with self.db.write() as conn:
            await conn.execute(update(r).where(r.c.worker_id == self.id,
                                               r.c.id.in_(list(self.tasks)))
                               .values(lease_expires_at=ids.now() + LEASE_SECONDS))

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
