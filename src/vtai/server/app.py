"""The ASGI application: ``create_app(settings)`` wires everything; nothing is global."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import Response

from vtai.server.api import assistants, errors, files, messages, runs, threads
from vtai.server.api.auth import KeyRing
from vtai.server.api.responses import json_response
from vtai.server.providers.routing import Providers
from vtai.server.runs.events import EventBus
from vtai.server.runs.executor import Executor
from vtai.server.runs.records import RunRecords
from vtai.server.runs.worker import Worker
from vtai.server.settings import Settings
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database
from vtai.server.tools.registry import PluginEnv, load_plugins

log = logging.getLogger("vtai.server")

API_PREFIX = "/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.sqlalchemy_url)
    providers = Providers(settings)
    bus = EventBus(db)
    records = RunRecords(db, bus)
    blobs = BlobStore(settings.data_dir / "files")
    plugins = load_plugins(PluginEnv(settings, db, blobs, providers))
    builtins = {p.tool.type: p.tool for p in plugins if p.tool is not None}
    worker = Worker(Executor(records, providers, blobs, builtins))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.migrate()
        await app.state.keyring.load()
        if app.state.keyring.open:
            log.warning(
                "no API keys configured: the server is open to anyone who can reach it "
                "(set VTAI_API_KEYS or run `vtai keys create` to require keys)")
        await bus.start()
        for plugin in plugins:
            if plugin.start:
                await plugin.start()
        if settings.run_worker:
            worker.start()
        try:
            yield
        finally:
            await worker.stop()
            for plugin in plugins:
                if plugin.stop:
                    await plugin.stop()
            await bus.stop()
            await providers.close()
            await db.close()

    app = FastAPI(
        title="VT.ai Assistants",
        version="0.1.0",
        summary="The OpenAI Assistants API v2, self-hosted.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.keyring = KeyRing(settings, db)
    app.state.blobs = blobs
    app.state.providers = providers
    app.state.records = records
    app.state.worker = worker
    errors.install(app)
    # runs first: its /threads/runs must win over /threads/{thread_id}
    for router in (runs.router, assistants.router, threads.router, messages.router,
                   files.router):
        app.include_router(router, prefix=API_PREFIX)
    for plugin in plugins:
        for router in plugin.routers:
            app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    return app
