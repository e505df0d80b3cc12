"""The database: engines, transactions and start-up migrations.

SQLite (the default) keeps one writer: write transactions start with BEGIN IMMEDIATE on a
single pooled connection, so a transaction never fails half way on an upgrade from read to
write; reads run concurrently beside it thanks to WAL. PostgreSQL uses one pool for both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from vtai.server.store import migrate

log = logging.getLogger("vtai.store")

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=120)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.writer = _sqlite_engine(url, immediate=True, pool_size=1)
            self.reader = _sqlite_engine(url, immediate=False, pool_size=8)
        else:
            self.writer = create_async_engine(url, pool_size=10, max_overflow=20,
                                              pool_pre_ping=True)
            self.reader = self.writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.writer.begin() as conn:
            yield conn

    async def migrate(self) -> None:
        async with self.writer.begin() as conn:
            if not self.is_sqlite:
                # Several processes may start at once on one PostgreSQL.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7236001)"))
            await conn.run_sync(migrate.upgrade)
        log.info("database ready: %s", self.describe())

    def describe(self) -> str:
        return self.writer.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
