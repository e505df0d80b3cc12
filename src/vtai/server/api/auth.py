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

from vtai.server import ids
from vtai.server.api.errors import APIError
from vtai.server.settings import Settings, hash_key
from vtai.server.store import tables
from vtai.server.store.db import Database

log = logging.getLogger("vtai.server")

OPEN_PROJECT = "proj_default"
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


async def project_id(request: Request) -> str:
    """FastAPI dependency: the project of the calling key, within the key's request rate."""
    keyring: KeyRing = request.app.state.keyring
    keyring.note_beta_header(request)
    authorization = request.headers.get("authorization")
    project = await keyring.project_for(authorization)
    request.app.state.rate_limiter.check(
        project if keyring.open else hash_key(_bearer(authorization)))
    return project


async def create_key(db: Database, project: str, name: str = "") -> str:
    """Store a new key for ``project`` (hashed) and return it; it is shown only once."""
    key = "sk-vtai-" + secrets.token_urlsafe(32)
    async with db.write() as conn:
        await conn.execute(insert(tables.api_keys).values(
            id=ids.new_id("key_"), project_id=project, name=name or project,
            key_hash=hash_key(key), created_at=ids.now(),
        ))
    return key
