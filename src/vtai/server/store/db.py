"""The database: SQLite by default (store/sqlite.py), PostgreSQL at scale (store/postgres.py),
behind one interface of reads, transactions and single statements; start-up migrations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text

from vtai.server.store import migrate
from vtai.server.store.postgres import Listener, PostgresStore
from vtai.server.store.sql import Connection, Rows, Sql
from vtai.server.store.sqlite import SqliteStore

log = logging.getLogger("vtai.store")

_MIGRATION_LOCK = 7236001  # several processes may start at once on one PostgreSQL


class Database:
    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite = SqliteStore(url) if self.is_sqlite else None
        self.postgres = None if self.is_sqlite else PostgresStore(url, pool_size)

    @property
    def checkpoints(self) -> int:
        """SQLite WAL checkpoints made so far."""
        return self.sqlite.checkpoints if self.sqlite is not None else 0

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A connection that sees committed data (each statement on its own)."""
        if self.sqlite is not None:
            async with self.sqlite.read() as conn:
                yield conn
        else:
            assert self.postgres is not None
            async with self.postgres.connection() as pg:
                yield pg

    @asynccontextmanager
    async def write(self, turn: str | None = None) -> AsyncIterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises. Its
        commit is durable (on PostgreSQL it waits for the WAL flush). With ``turn``, it
        starts once no other transaction with the same ``turn`` is under way, so that what it
        reads cannot change before it writes: on PostgreSQL an advisory lock held until it
        ends; on SQLite write transactions take turns anyway."""
        if self.sqlite is not None:
            async with self.sqlite.write() as conn:
                yield conn
        else:
            assert self.postgres is not None
            async with self.postgres.write(turn) as pg:
                yield pg

    async def run(self, statement: Sql, params: dict[str, Any]) -> Rows:
        """One statement, atomic by itself: on PostgreSQL in one round trip, not waiting for
        the WAL flush unless the statement asks for it (postgres.DURABLE); on SQLite in a
        write transaction."""
        if self.sqlite is not None:
            async with self.sqlite.write() as conn:
                return await conn.sql(statement, params)
        assert self.postgres is not None
        return await self.postgres.run(statement, params)

    async def migrate(self) -> None:
        async with self.write() as conn:
            if not self.is_sqlite:
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            await conn.run_sync(migrate.upgrade)
        log.info("database ready: %s", self.describe())

    async def listen(self, callbacks: dict[str, Callable[[str], None]]) -> Listener:
        """PostgreSQL LISTEN on a connection of its own (see PostgresStore.listen)."""
        assert self.postgres is not None, "LISTEN is PostgreSQL's"
        return await self.postgres.listen(callbacks)

    async def notify(self, conn: Connection, channel: str, payload: str = "") -> None:
        """NOTIFY listeners in other processes when ``conn``'s transaction commits; nothing on
        SQLite, where all work happens in one process."""
        if self.postgres is not None:
            await self.postgres.notify(conn, channel, payload)

    def describe(self) -> str:
        store = self.sqlite or self.postgres
        assert store is not None
        return store.describe()

    async def close(self) -> None:
        if self.sqlite is not None:
            await self.sqlite.close()
        if self.postgres is not None:
            await self.postgres.close()
