"""Everything a process needs to store objects and execute runs, with or without HTTP.

``vtai serve`` wraps it in the ASGI app; ``vtai worker`` runs it alone (executing runs and
ingestion jobs only); ``vtai serve --no-worker`` serves HTTP and leaves execution to workers.
"""

from __future__ import annotations

import asyncio
import logging

from vtai.server.metrics import Metrics
from vtai.server.providers.routing import Providers
from vtai.server.retrieval.engine import Retrieval
from vtai.server.runs import states
from vtai.server.runs.events import EventBus
from vtai.server.runs.executor import Executor
from vtai.server.runs.records import RunRecords
from vtai.server.runs.response_executor import ResponseExecutor
from vtai.server.runs.response_records import ResponseRecords
from vtai.server.runs.worker import RESPONSES, Worker
from vtai.server.settings import Settings
from vtai.server.store import queries
from vtai.server.store.containers import ContainerStore
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.server.tools.registry import PluginEnv, load_plugins

log = logging.getLogger("vtai.server")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.sqlalchemy_url, settings.db_pool_size)
        self.providers = Providers(settings)
        self.bus = EventBus(self.db)
        self.metrics = Metrics()
        self.records = RunRecords(self.db, self.bus, self.metrics)
        self.files = FileStore.at(self.db, settings.data_dir)
        self.containers = ContainerStore(self.files)
        self.retrieval = Retrieval(settings.retrieval, self.db, self.files,
                                   self.providers.default)
        self.plugins = load_plugins(PluginEnv(settings, self.db, self.files, self.providers,
                                              self.retrieval))
        builtins = {p.tool.type: p.tool for p in self.plugins}
        executor = Executor(self.records, self.providers, self.files, self.retrieval, builtins)
        self.worker = Worker(executor,
                             shutdown_grace=settings.shutdown_grace,
                             lease_seconds=settings.run_lease_seconds)
        self.responses = ResponseRecords(self.db, self.bus)
        self.response_worker = Worker(
            ResponseExecutor(self.responses, self.providers, self.files, self.retrieval,
                             self.metrics, builtins),
            RESPONSES, shutdown_grace=settings.shutdown_grace,
            lease_seconds=settings.run_lease_seconds)
        self.executes_runs = False
        self.bus.on_work = self._wake_workers

    def _wake_workers(self) -> None:
        self.worker.wake()
        self.response_worker.wake()

    async def start(self, *, execute_runs: bool) -> None:
        await self.db.migrate()
        self.providers.prepare()
        await self.bus.start()
        self.files.start()
        self.executes_runs = execute_runs
        if execute_runs:
            await self.retrieval.start()
            for plugin in self.plugins:
                if plugin.start:
                    await plugin.start()
            self.worker.start()
            self.response_worker.start()
            log.info("executing runs as %s", self.worker.id)

    def serve_metrics(self, host: str, port: int) -> None:
        """Prometheus metrics on a port of their own (see metrics.Metrics.serve)."""
        self.metrics.serve(host, port, self._run_counts, list(states.TRANSITIONS))

    async def _run_counts(self) -> dict[str, int]:
        async with self.db.read() as conn:
            return await queries.run_counts(conn)

    async def stop(self) -> None:
        if self.executes_runs:
            await asyncio.gather(self.worker.stop(), self.response_worker.stop())
            for plugin in self.plugins:
                if plugin.stop:
                    await plugin.stop()
            await self.retrieval.stop()
        await self.files.stop()
        await self.bus.stop()
        await self.providers.close()
        await self.db.close()
