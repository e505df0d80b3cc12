"""Prometheus metrics of one process, in a registry of its own (no process-wide state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from vtai.server.runs import states
from vtai.server.store import tables
from vtai.server.store.db import Database

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_finished = Counter(
            "vtai_runs_finished", "Runs that reached a terminal status, by status.",
            ["status"], registry=self.registry)
        self.run_seconds = Histogram(
            "vtai_run_seconds", "Seconds from a run's creation to its terminal status.",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.upstream_seconds = Histogram(
            "vtai_upstream_seconds",
            "Model calls: seconds to the first streamed token and to the end.",
            ["phase"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.tool_seconds = Histogram(
            "vtai_tool_seconds", "Seconds a built-in tool call took, by tool.", ["tool"],
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.guessed_starts = Counter(
            "vtai_run_starts_guessed",
            "Runs whose first model call left before the run-start read, from what this "
            "process knew of the thread; guess=wrong: the read found otherwise and that "
            "call was given up.", ["guess"], registry=self.registry)
        self.runs = Gauge("vtai_runs", "Runs stored, by status (counted at scrape).",
                          ["status"], registry=self.registry)
        self.queue_depth = Gauge("vtai_queue_depth", "Runs queued and not yet started.",
                                 registry=self.registry)

    async def render(self, db: Database) -> bytes:
        """The text exposition, with the database-wide gauges read now."""
        r = tables.runs
        async with db.read() as conn:
            rows = (await conn.execute(
                select(r.c.status, func.count().label("n")).group_by(r.c.status))).all()
        counts: dict[str, int] = {row.status: int(row.n) for row in rows}
        for status in states.TRANSITIONS:
            self.runs.labels(status).set(counts.get(status, 0))
        self.queue_depth.set(counts.get(states.QUEUED, 0))
        return generate_latest(self.registry)
