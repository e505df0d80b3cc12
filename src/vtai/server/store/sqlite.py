"""SQLite, the default store: run in the event loop's thread through SQLAlchemy's synchronous
engine. A statement on a local WAL database takes microseconds, while handing each one to a
driver thread (aiosqlite) costs a hundred times more.

Write transactions take an asyncio lock, so a transaction that awaits never blocks another one
inside this process, and start with BEGIN IMMEDIATE, so one never fails half way when it turns
from reading to writing; reads run on their own connections in autocommit and see committed
data only. WAL checkpoints run in a thread of their own, every ``CHECKPOINT_EVERY`` writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import engine as sa_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql.base import Executable

from vtai.server.store.sql import Rows, Sql, T

log = logging.getLogger("vtai.store")

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)

# SQLite write transactions between two WAL checkpoints: a run's few writes add a few pages
# each, so this is about SQLite's own threshold of 1,000 pages.
CHECKPOINT_EVERY = 250


class LoopConnection:
    """A synchronous SQLAlchemy connection behind the async interface of ``Connection``."""

    def __init__(self, conn: sa_engine.Connection) -> None:
        self._conn = conn
        self._raw: Any = conn.connection.driver_connection  # sqlite3, in conn's transaction

    async def execute(self, statement: Executable, parameters: Any = None
                      ) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[[sa_engine.Connection], T]) -> T:
        return fn(self._conn)

    async def sql(self, statement: Sql, params: dict[str, Any] | None = None) -> Rows:
        try:
            cursor = self._raw.execute(statement.sqlite, params or {})
        except sqlite3.IntegrityError as err:  # raised as SQLAlchemy's, as on PostgreSQL
            raise sa_exc.IntegrityError(statement.sqlite, params, err) from err
        return Rows(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    async def sql_many(self, statement: Sql, rows: list[dict[str, Any]]) -> None:
        try:
            self._raw.executemany(statement.sqlite, rows)
        except sqlite3.IntegrityError as err:
            raise sa_exc.IntegrityError(statement.sqlite, None, err) from err


def _engine(url: str, *, immediate: bool, pool_size: int) -> sa_engine.Engine:
    """``immediate``: the writer's engine, whose transactions begin with BEGIN IMMEDIATE and
    which leaves WAL checkpoints to ``SqliteStore``."""
    pragmas = (*_PRAGMAS, "PRAGMA wal_autocheckpoint=0") if immediate else _PRAGMAS
    engine = create_engine(
        url.replace("sqlite+aiosqlite:", "sqlite:"), pool_size=pool_size, max_overflow=0,
        pool_reset_on_return=None,  # no transaction is left open: see write() and read()
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let the "begin" event below issue BEGIN instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa_engine.Connection) -> None:
        if immediate:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SqliteStore:
    def __init__(self, url: str) -> None:
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.writer_engine = _engine(url, immediate=True, pool_size=1)
        self._reader = _engine(url, immediate=False, pool_size=8)
        self._write_lock = asyncio.Lock()
        # Writes take turns (the lock), so one connection serves them all, kept open:
        # taking it from the pool for each transaction costs as much as a statement.
        self._writer: sa_engine.Connection | None = None
        # WAL checkpoints run in a thread of their own (see _after_commit), not in the
        # commit that happens to cross SQLite's threshold, in the event loop.
        self._file = path if path and path != ":memory:" else None
        self._commits = 0
        self._checkpointer: sqlite3.Connection | None = None
        self.checkpointing: asyncio.Task[None] | None = None
        self.checkpoints = 0  # done so far

    @asynccontextmanager
    async def read(self) -> AsyncIterator[LoopConnection]:
        with self._reader.connect() as conn:
            yield LoopConnection(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[LoopConnection]:
        """One transaction, committed when the block ends, rolled back if it raises. Write
        transactions take turns in this process (and SQLite has one writer anyway)."""
        async with self._write_lock:
            conn = self._writer
            if conn is None or conn.invalidated or conn.closed:
                conn = self._writer = self.writer_engine.connect()
            with conn.begin():
                yield LoopConnection(conn)
        self._after_commit()

    def _after_commit(self) -> None:
        """Every ``CHECKPOINT_EVERY`` write transactions, copy the WAL's pages into the
        database file in a thread (a passive checkpoint: writers and readers go on meanwhile).
        SQLite's own checkpoint would run inside the committing transaction, in the event
        loop, every 1,000 pages: several milliseconds (the copy and an fsync of the database
        file) that every stream would wait for."""
        self._commits += 1
        if self._commits < CHECKPOINT_EVERY or self._file is None or (
                self.checkpointing is not None and not self.checkpointing.done()):
            return
        self._commits = 0
        self.checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_now)
            self.checkpoints += 1
        except Exception:
            log.exception("WAL checkpoint failed (the next one will try again)")

    def _checkpoint_now(self) -> None:
        if self._checkpointer is None:
            assert self._file is not None
            self._checkpointer = sqlite3.connect(self._file, isolation_level=None,
                                                 check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def describe(self) -> str:
        return self.writer_engine.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        if self.checkpointing is not None:
            await asyncio.wait([self.checkpointing])
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.writer_engine.dispose()
        self._reader.dispose()
