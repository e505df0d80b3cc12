"""The worker renews the leases of the runs it executes, in batches, passing over a run whose
row another transaction holds instead of waiting for it."""

from __future__ import annotations

import asyncio

import pytest

from vtai.server import ids
from vtai.server.runs import worker as worker_module
from vtai.server.runs.worker import Worker
from vtai.server.store import objects, tables
from vtai.server.store.db import Database, Sql

_LEASES = Sql("SELECT id, lease_expires_at FROM runs ORDER BY id")
_HOLD = Sql("SELECT id FROM runs WHERE id = :id FOR UPDATE")


class _Executor:
    def __init__(self, db: Database) -> None:
        self.db = db


async def _worker_with_runs(store: Database, count: int) -> tuple[Worker, list[str]]:
    """A worker executing ``count`` runs whose leases expire in a second."""
    worker = Worker(_Executor(store))  # type: ignore[arg-type]
    run_ids = [f"run_{n:03}" for n in range(count)]
    async with store.write() as conn:
        for run_id in run_ids:
            await conn.sql(*objects.insert_statement(
                tables.runs, {"id": run_id, "created_at": 1}, "proj", "{}",
                thread_id=f"thread_{run_id}", status="in_progress", worker_id=worker.id,
                lease_expires_at=ids.now() + 1))
    loop = asyncio.get_running_loop()
    worker.tasks = {run_id: loop.create_future() for run_id in run_ids}  # type: ignore[misc]
    return worker, run_ids


async def _leases(store: Database) -> dict[str, int]:
    async with store.read() as conn:
        return {row[0]: row[1] for row in (await conn.sql(_LEASES)).rows}


async def test_every_lease_is_renewed_batch_by_batch(
        store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "RENEW_BATCH", 2)
    worker, run_ids = await _worker_with_runs(store, 5)
    async with store.write() as conn:  # another worker's run: not touched
        await conn.sql(*objects.insert_statement(
            tables.runs, {"id": "run_other", "created_at": 1}, "proj", "{}",
            thread_id="thread_other", status="in_progress", worker_id="worker_other",
            lease_expires_at=7))
    worker.tasks["run_other"] = asyncio.get_running_loop().create_future()  # type: ignore
    await worker.renew_leases()
    leases = await _leases(store)
    assert all(leases[run_id] >= ids.now() + worker.lease_seconds - 2 for run_id in run_ids)
    assert leases["run_other"] == 7


async def test_a_run_held_by_another_transaction_is_passed_over_not_waited_for(
        store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite's writes take turns: no row is held while another one writes")
    store = Database(store_url)
    await store.migrate()
    try:
        worker, run_ids = await _worker_with_runs(store, 3)
        held, release = asyncio.Event(), asyncio.Event()

        async def hold(run_id: str) -> None:
            async with store.write() as conn:
                await conn.sql(_HOLD, {"id": run_id})
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold(run_ids[1]))
        await held.wait()
        before = await _leases(store)
        try:
            await asyncio.wait_for(worker.renew_leases(), 10)
        finally:
            release.set()
            await holder
        leases = await _leases(store)
        assert leases[run_ids[1]] == before[run_ids[1]]  # passed over
        assert leases[run_ids[0]] > before[run_ids[0]] and \
            leases[run_ids[2]] > before[run_ids[2]]
    finally:
        await store.close()
