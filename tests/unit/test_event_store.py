"""Run events stored in batches: in order, each once, none lost when a write fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vtai.server.runs import events as events_module
from vtai.server.runs.events import Event, EventBus
from vtai.server.store.db import Database

PER_WRITE = events_module.SQLITE_EVENTS_PER_WRITE


def _publish(bus: EventBus, count: int, runs: int = 3, start: int = 0) -> dict[str, list[str]]:
    """``count`` events spread over ``runs`` runs: each run's event ids in publishing order."""
    published: dict[str, list[str]] = {}
    for n in range(start, start + count):
        run_id = f"run_{n % runs}"
        event = bus.publish(run_id, Event("thread.message.delta", f'{{"n": {n}}}'))
        published.setdefault(run_id, []).append(event.id)
    return published


async def _stored(bus: EventBus, run_id: str) -> list[str]:
    return [event.id for event in await bus.history(run_id, None)]


def _store_method(store: Database) -> str:
    """The name of the EventBus method that writes a batch to ``store``."""
    return "_store_sqlite" if store.is_sqlite else "_store_pg"


async def test_a_read_during_a_flush_waits_for_it_and_sees_every_event(store: Database) -> None:
    bus = EventBus(store)  # not started: flushes happen only where this test makes them
    first = _publish(bus, 3 * PER_WRITE + 5)
    flushing = asyncio.create_task(bus.flush())
    await asyncio.sleep(0)  # the flush is under way (on SQLite: its first write is done)
    later = _publish(bus, 7, start=10_000)
    for run_id, ids in first.items():
        assert await _stored(bus, run_id) == ids + later.get(run_id, [])
    await flushing
    assert bus.pending_count == 0


async def test_events_a_failed_write_left_are_stored_by_the_next_flush_once(
        store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EventBus(store)
    published = _publish(bus, 2 * PER_WRITE + 9)
    writes = 0
    store_name = _store_method(store)
    real_store = getattr(bus, store_name)

    async def failing_second(events: list[tuple[str, Event]]) -> Any:
        nonlocal writes
        writes += 1
        if writes == 2 or not store.is_sqlite:
            raise OSError("the disk is full")
        return await real_store(events)

    monkeypatch.setattr(bus, store_name, failing_second)
    with pytest.raises(OSError):
        await bus.flush()
    # On SQLite the first part is stored and the rest waits; on PostgreSQL the batch is
    # one write, so all of it waits.
    assert bus.pending_count == (PER_WRITE + 9 if store.is_sqlite else 2 * PER_WRITE + 9)
    monkeypatch.setattr(bus, store_name, real_store)
    for run_id, ids in published.items():
        assert await _stored(bus, run_id) == ids  # each once, in order
    assert bus.pending_count == 0


async def test_a_cancelled_flush_keeps_what_it_did_not_store(store: Database) -> None:
    bus = EventBus(store)
    published = _publish(bus, 3 * PER_WRITE)
    flushing = asyncio.create_task(bus.flush())
    await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    for run_id, ids in published.items():
        assert await _stored(bus, run_id) == ids


async def test_a_write_whose_outcome_was_lost_is_made_again_without_duplicates(
        store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write commits, then its caller sees an error (a connection lost after the commit):
    the events go back to pending, and storing them again neither fails nor doubles them."""
    bus = EventBus(store)
    published = _publish(bus, PER_WRITE + 3)
    store_name = _store_method(store)
    real_store = getattr(bus, store_name)

    async def stored_then_lost(events: list[tuple[str, Event]]) -> Any:
        await real_store(events)
        raise OSError("the connection was lost after the commit")

    monkeypatch.setattr(bus, store_name, stored_then_lost)
    with pytest.raises(OSError):
        await bus.flush()
    assert bus.pending_count > 0  # the write's outcome is unknown: tried again
    monkeypatch.setattr(bus, store_name, real_store)
    await bus.flush()
    for run_id, ids in published.items():
        assert await _stored(bus, run_id) == ids
