"""PostgreSQL: SQLAlchemy's async engine on asyncpg, with ``Sql`` run on the asyncpg
connection under it, LISTEN/NOTIFY, and advisory locks for writes that take turns.

Sessions commit without waiting for the WAL flush (``synchronous_commit`` off), so a write
that does not need to be durable at once costs no flush; ``write()`` transactions and the
statements that ask for it (``DURABLE``) wait for it, as PostgreSQL does by default.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import engine as sa_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.base import Executable

from vtai.server.store.sql import Connection, Rows, Sql, T

# In a statement's SELECT list: its own transaction's commit waits for the WAL flush.
DURABLE = "set_config('synchronous_commit', 'on', true)"
# A transaction of write() waits for it too. One round trip for both.
_BEGIN_DURABLE = "BEGIN; SET LOCAL synchronous_commit TO on"
_NOTIFY = Sql("SELECT pg_notify(:channel, :payload)")


def turn_lock(key: str) -> int:
    """The advisory lock that ``write(turn=key)`` takes: a 64-bit id."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big",
                          signed=True)


def _pg_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


_PG_ERRORS = _pg_errors()


class PgConnection:
    """SQLAlchemy's async connection, with ``Sql`` run on the asyncpg connection under it.

    The connection is in autocommit mode as far as SQLAlchemy knows: ``write`` opens and
    ends the transaction itself, so both kinds of statement run inside it. asyncpg's errors
    are raised as SQLAlchemy's (a value PostgreSQL cannot store is a ``DataError``, a lost
    connection an ``OperationalError``), as the rest of the server expects."""

    def __init__(self, conn: AsyncConnection, raw: Any) -> None:
        self._conn = conn
        self._raw = raw  # asyncpg.Connection
        # Set while a transaction is open or being ended: if the connection goes back to
        # the pool so (its COMMIT or ROLLBACK was interrupted), its state is unknown.
        self.in_transaction = False

    async def execute(self, statement: Executable, parameters: Any = None
                      ) -> CursorResult[Any]:
        return await self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[[sa_engine.Connection], T]) -> T:
        return await self._conn.run_sync(fn)

    async def sql(self, statement: Sql, params: dict[str, Any] | None = None) -> Rows:
        args = statement.positional(params or {})
        if statement.returns_rows:
            rows = await self._run(statement.postgres, self._raw.fetch(statement.postgres, *args))
            return Rows(rows, len(rows))
        status = await self._run(statement.postgres, self._raw.execute(statement.postgres, *args))
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 1", "INSERT 0 1"
        return Rows([], int(count) if count.isdigit() else 0)

    async def sql_many(self, statement: Sql, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._run(statement.postgres, self._raw.executemany(
                statement.postgres, [statement.positional(row) for row in rows]))

    def terminate(self) -> None:
        """Close the connection to PostgreSQL at once, without waiting for anything."""
        self._raw.terminate()

    async def command(self, sql: str) -> None:
        """BEGIN, COMMIT, ROLLBACK."""
        await self._run(sql, self._raw.execute(sql))

    async def _run(self, statement: str, call: Awaitable[T]) -> T:
        """``call``'s result, its asyncpg error raised as SQLAlchemy's."""
        try:
            return await call
        except _PG_ERRORS as err:
            raise await self._translated(err, statement) from err

    async def _translated(self, err: BaseException, statement: str) -> sa_exc.DBAPIError:
        import asyncpg

        if isinstance(err, asyncpg.DataError):
            return sa_exc.DataError(statement, None, err)
        if isinstance(err, asyncpg.IntegrityConstraintViolationError):
            return sa_exc.IntegrityError(statement, None, err)
        if isinstance(err, asyncpg.PostgresError) and \
                not isinstance(err, asyncpg.PostgresConnectionError):
            return sa_exc.DBAPIError(statement, None, err)
        # The connection is gone or unusable: the pool must not hand it out again.
        with contextlib.suppress(Exception):
            await self._conn.invalidate()
        return sa_exc.OperationalError(statement, None, err, connection_invalidated=True)


class Listener:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def close(self) -> None:
        await self._conn.close()


class PostgresStore:
    def __init__(self, url: str, pool_size: int) -> None:
        # Small per process: several servers and workers share PostgreSQL's
        # max_connections (100 by default), and each statement holds a connection briefly.
        # No overflow: connections beyond the pool would be opened and closed again under
        # load (a new server process for PostgreSQL each time); waiting for one is cheaper.
        # No ping before each use (two round trips per transaction): a connection found
        # broken fails its request with 503, and SQLAlchemy then drops the whole pool, so
        # the requests after it reconnect.
        self.engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=0, pool_timeout=60,
            connect_args={"server_settings": {"synchronous_commit": "off"}})
        # Reads outside a transaction: under READ COMMITTED each statement sees what was
        # committed when it started either way, and BEGIN and ROLLBACK around a read
        # are two more round trips to the server. Writes begin and end their own (see
        # write()), so SQLAlchemy keeps out of transactions altogether.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PgConnection]:
        """A connection from the pool, outside any transaction (each statement is one),
        given back at the end without the task that SQLAlchemy's ``async with`` runs the
        return in (to finish it if the caller is cancelled): waiting for that task costs two
        turns of the event loop, milliseconds under load. Here the return does no I/O, so
        nothing can interrupt it: no transaction is left open (``write`` ends its own), and
        there is no reset round trip in autocommit mode. A connection whose transaction did
        not end (its task was cancelled in BEGIN, COMMIT or ROLLBACK) is closed instead."""
        aconn = await self._autocommit.connect()
        conn = None
        try:
            raw = (await aconn.get_raw_connection()).driver_connection
            conn = PgConnection(aconn, raw)
            yield conn
        finally:
            if conn is not None and conn.in_transaction:
                # Cancelled while its transaction ended (or began): closed at once, so
                # that no later request runs in what is left of it.
                conn.terminate()
                with contextlib.suppress(Exception):
                    await aconn.invalidate()
            await aconn.close()

    @asynccontextmanager
    async def write(self, turn: str | None = None) -> AsyncIterator[PgConnection]:
        """One durable transaction; with ``turn``, holding the advisory lock of that turn
        (taken with BEGIN, in the same round trip) until it ends."""
        async with self.connection() as pg:
            pg.in_transaction = True
            await pg.command(_BEGIN_DURABLE if turn is None else
                             f"{_BEGIN_DURABLE}; SELECT pg_advisory_xact_lock("
                             f"{turn_lock(turn)})")
            try:
                yield pg
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection is invalidated
                    await pg.command("ROLLBACK")
                    pg.in_transaction = False
                raise
            await pg.command("COMMIT")
            pg.in_transaction = False

    async def run(self, statement: Sql, params: dict[str, Any]) -> Rows:
        """One statement, atomic by itself, in one round trip."""
        async with self.connection() as conn:
            return await conn.sql(statement, params)

    async def listen(self, callbacks: dict[str, Callable[[str], None]]) -> Listener:
        """LISTEN on a connection of its own; each channel's callback gets the payloads sent
        to it."""
        import asyncpg

        dsn = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        conn = await asyncpg.connect(dsn)
        for channel, callback in callbacks.items():
            await conn.add_listener(
                channel, lambda _c, _pid, _ch, payload, cb=callback: cb(payload))
        return Listener(conn)

    @staticmethod
    async def notify(conn: Connection, channel: str, payload: str = "") -> None:
        await conn.sql(_NOTIFY, {"channel": channel, "payload": payload})

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        await self.engine.dispose()
