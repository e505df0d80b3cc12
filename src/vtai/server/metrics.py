"""Prometheus metrics of one process, in a registry of its own (no process-wide state), served
on a port of their own (``serve``): they count over every project, so they are never on the
API port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("vtai.server")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SCRAPE_SECONDS = 10.0  # a scrape's wait for the database-wide counts

# The runs stored by status, read when a scrape asks (from the event loop, see _RunCounts).
RunCounts = Callable[[], Coroutine[Any, Any, dict[str, int]]]


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

    def serve(self, host: str, port: int, count_runs: RunCounts, statuses: list[str]) -> None:
        """Serve ``/metrics`` on ``host:port`` (prometheus_client's server, in a thread of
        its own), with the runs stored by status counted at each scrape by ``count_runs`` in
        this event loop."""
        self.registry.register(_RunCounts(asyncio.get_running_loop(), count_runs, statuses))
        start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)


class _RunCounts(Collector):
    """``vtai_runs`` by status and ``vtai_queue_depth``, read from the database (in the
    event loop that owns it) when a scrape asks, from the metrics server's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count_runs: RunCounts,
                 statuses: list[str]) -> None:
        self.loop = loop
        self.count_runs = count_runs
        self.statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = asyncio.run_coroutine_threadsafe(self.count_runs(), self.loop).result(
                SCRAPE_SECONDS)
        except Exception:
            log.exception("metrics: the runs stored could not be counted")
            return
        runs = GaugeMetricFamily("vtai_runs", "Runs stored, by status (counted at scrape).",
                                 labels=["status"])
        for status in self.statuses:
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        yield GaugeMetricFamily("vtai_queue_depth", "Runs queued and not yet started.",
                                value=counts.get("queued", 0))
