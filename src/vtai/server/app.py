"""The ASGI application: ``create_app(settings)`` wires everything; nothing is global."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from vtai.heap import settle_heap
from vtai.server.api import (
    assistants,
    chat,
    containers,
    conversations,
    errors,
    files,
    messages,
    models,
    responses,
    runs,
    threads,
    vector_stores,
)
from vtai.server.api.auth import KeyRing, RequireKey
from vtai.server.api.json import json_response
from vtai.server.api.limits import BodyLimit, NoNulInUrl, RateLimiter
from vtai.server.runtime import Runtime
from vtai.server.services.container import Services
from vtai.server.settings import Settings

log = logging.getLogger("vtai.server")

API_PREFIX = "/v1"
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart framing and form fields around the file


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    runtime.providers.serving_at = (settings.host, settings.port)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start(execute_runs=settings.run_worker)
        await keyring.load()
        if keyring.open and not _loopback(settings.host) and not settings.insecure_no_auth:
            await runtime.stop()
            raise RuntimeError(
                f"refusing to serve {settings.host} with no API keys: anyone who can reach it "
                "could use it. Set VTAI_API_KEYS (or `vtai keys create`), bind 127.0.0.1, or "
                "pass --insecure-no-auth.")
        if keyring.open:
            log.warning(
                "no API keys configured: the server is open to anyone who can reach it "
                "(set VTAI_API_KEYS or run `vtai keys create` to require keys)")
        if settings.metrics_port is not None:
            runtime.serve_metrics(settings.metrics_host, settings.metrics_port)
        settle_heap()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="VT.ai Assistants",
        version="0.1.0",
        summary="The OpenAI Assistants API v2, self-hosted.",
        lifespan=lifespan,
    )
    app.add_middleware(NoNulInUrl)
    upload_limit = settings.max_file_bytes + UPLOAD_OVERHEAD_BYTES
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes, paths={
        f"{API_PREFIX}/files": upload_limit,
        f"{API_PREFIX}/containers/[^/]+/files": upload_limit})
    keyring = KeyRing(settings, runtime.db)
    # outside BodyLimit and inside CORS (which answers preflights, sent without a key)
    rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.add_middleware(RequireKey, keyring=keyring, rate_limiter=rate_limiter,
                       prefix=API_PREFIX)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_methods=["*"], allow_headers=["*"],
                           allow_origins=[o.strip() for o in settings.cors_origins.split(",")])
    # What the routes use, typed (api/deps.py): the services, and the key ring.
    app.state.services = Services.of(runtime)
    app.state.keyring = keyring
    errors.install(app)
    # runs first: its /threads/runs must win over /threads/{thread_id}
    for router in (runs.router, assistants.router, threads.router, messages.router,
                   files.router, vector_stores.router, models.router, responses.router,
                   conversations.router, chat.router, containers.router):
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    return app
