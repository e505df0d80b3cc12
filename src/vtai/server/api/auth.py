"""API keys and projects.

With no key configured (neither ``VTAI_API_KEYS`` nor ``vtai keys create``) the server is open
and everything belongs to one project. Otherwise each request needs ``Authorization: Bearer``
with a known key, and sees only its key's project.
"""

from __future__ import annotations

import logging
import secrets
import time

from fastapi import Request
from sqlalchemy import func, insert, select
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vtai.server import ids
from vtai.server.api.errors import APIError, error_response
from vtai.server.api.limits import RateLimiter
from vtai.server.settings import Settings, hash_key
from vtai.server.store import tables
from vtai.server.store.db import Database

log = logging.getLogger("vtai.server")

OPEN_PROJECT = "proj_default"
PROJECT_STATE = "vtai_project"  # the request state's entry RequireKey leaves for project_id
_OPEN_RECHECK_SECONDS = 5.0


class KeyRing:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.known: dict[str, str] = settings.env_keys()  # key hash -> project id
        self.open = False
        self._checked_at = 0.0
        self._warned_beta_header = False

    async def load(self) -> None:
        """Decide whether the server is open: no key in the environment or the database."""
        self._checked_at = time.monotonic()
        if self.known:
            self.open = False
            return
        async with self.db.read() as conn:
            count = (await conn.execute(select(func.count()).select_from(tables.api_keys))).scalar()
        self.open = not count

    async def project_for(self, authorization: str | None) -> str:
        if self.open:
            if time.monotonic() - self._checked_at < _OPEN_RECHECK_SECONDS:
                return OPEN_PROJECT
            await self.load()  # a key may have been created since: then the server closes
            if self.open:
                return OPEN_PROJECT
        key = _bearer(authorization)
        digest = hash_key(key)
        project = self.known.get(digest)
        if project is None:
            async with self.db.read() as conn:
                query = select(tables.api_keys.c.project_id).where(
                    tables.api_keys.c.key_hash == digest)
                project = (await conn.execute(query)).scalar()
            if project is None:
                raise APIError(401, f"Incorrect API key provided: {_redact(key)}.",
                               code="invalid_api_key")
            self.known[digest] = project
        return project

    def note_beta_header(self, request: Request) -> None:
        if self._warned_beta_header or request.headers.get("openai-beta"):
            return
        self._warned_beta_header = True
        log.info("a client sent no 'OpenAI-Beta: assistants=v2' header; accepting it anyway")


def _bearer(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise APIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return key.strip()


def _redact(key: str) -> str:
    return f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"


class RequireKey:
    """The key of every request under ``prefix`` is checked here, before anything reads the
    request's body (FastAPI's dependencies run only after it has read and parsed it): a
    request without a valid key is answered 401 at once, whatever it is uploading. The
    project found is left in the request's state, for ``project_id``."""

    def __init__(self, app: ASGIApp, keyring: KeyRing, rate_limiter: RateLimiter,
                 prefix: str) -> None:
        self.app = app
        self.keyring = keyring
        self.rate_limiter = rate_limiter
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
                path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            authorization = headers.get("authorization")
            project = await self.keyring.project_for(authorization)
            # the key's request rate too, before the body (an upload) is read
            self.rate_limiter.check(
                project if self.keyring.open else hash_key(_bearer(authorization)))
        except APIError as err:
            await _refusal(err, headers)(scope, receive, send)
            return
        except Exception:
            # The key could not be looked up (the database, most likely): project_id looks
            # again inside the app, whose error handlers answer it (503 for the database).
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[PROJECT_STATE] = project
        await self.app(scope, receive, send)


def _refusal(err: APIError, headers: Headers) -> Response:
    """A 401 for a request that has a body closes the connection: kept open, the server
    would read the rest of the body (to drop it) before the next request."""
    if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
        err.headers = {**(err.headers or {}), "connection": "close"}
    return error_response(err)


async def project_id(request: Request) -> str:
    """FastAPI dependency: the project of the calling key, found (within the key's request
    rate) by RequireKey; looked up here when RequireKey could not (the database was away),
    so that the error handlers answer that."""
    keyring: KeyRing = request.app.state.keyring
    keyring.note_beta_header(request)
    project = getattr(request.state, PROJECT_STATE, None)
    if project is None:
        project = await keyring.project_for(request.headers.get("authorization"))
    return str(project)


async def create_key(db: Database, project: str, name: str = "") -> str:
    """Store a new key for ``project`` (hashed) and return it; it is shown only once."""
    key = "sk-vtai-" + secrets.token_urlsafe(32)
    async with db.write() as conn:
        await conn.execute(insert(tables.api_keys).values(
            id=ids.new_id("key_"), project_id=project, name=name or project,
            key_hash=hash_key(key), created_at=ids.now(),
        ))
    return key
