"""The database: engines, connections, transactions and start-up migrations.

SQLite (the default) runs in the event loop's thread through SQLAlchemy's synchronous engine:
a statement on a local WAL database takes microseconds, while handing each one to a driver
thread (aiosqlite) costs a hundred times more. Write transactions take an asyncio lock, so a
transaction that awaits never blocks another one inside this process, and start with BEGIN
IMMEDIATE, so one never fails half way when it turns from reading to writing; reads run on
their own connections in autocommit and see committed data only.

PostgreSQL uses SQLAlchemy's async engine on asyncpg. Both are used through ``Connection``.

The statements a run makes many times (``Sql``) are written by hand and handed to the driver
as they are: SQLAlchemy's statement building, caching and result processing cost several
times more CPU than SQLite's own work on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy import engine as sa_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.base import Executable

from vtai.server.store import migrate

log = logging.getLogger("vtai.store")

T = TypeVar("T")

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


# SQLite write transactions between two WAL checkpoints: a run's few writes add a few pages
# each, so this is about SQLite's own threshold of 1,000 pages.
CHECKPOINT_EVERY = 250

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class Sql:
    """A statement in plain SQL with ``:name`` parameters, run by the driver as written
    (sqlite3 takes the names; asyncpg gets ``$1, $2, ...``). For statements on hot paths;
    the rest of the store builds its statements with SQLAlchemy."""

    def __init__(self, text: str) -> None:
        self.sqlite = text
        self.names: list[str] = []
        for name in _PARAM.findall(text):
            if name not in self.names:
                self.names.append(name)
        self.postgres = _PARAM.sub(lambda m: f"${self.names.index(m[1]) + 1}", text)
        upper = text.lstrip().upper()
        self.returns_rows = upper.startswith(("SELECT", "VALUES")) or " RETURNING " in upper

    def positional(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)


def _numbered(k: int, statement: Sql) -> str:
    """The text of the ``k``-th statement of a combined one, its parameters renamed
    ``b{k}_name`` (the names _numbered_params gives their values)."""
    return _PARAM.sub(f":b{k}_\\1", statement.sqlite)


def _numbered_params(statements: list[tuple[Sql, dict[str, Any]]]) -> dict[str, Any]:
    """The parameters of ``statements`` under the names _numbered gives them."""
    return {f"b{k}_{name}": value for k, (_, given) in enumerate(statements)
            for name, value in given.items()}


_DURABLE = "set_config('synchronous_commit', 'on', true)"


@functools.cache
def _together(statements: tuple[Sql, ...], durable: bool = False) -> Sql:
    """Statements as one, for PostgreSQL: each a data-modifying CTE; the row counts (and
    with ``durable``, SET LOCAL synchronous_commit on: its commit waits for the WAL flush)."""
    parts, counts = [], []
    for k, statement in enumerate(statements):
        parts.append(f"b{k} AS ({_numbered(k, statement)} RETURNING 1)")
        counts.append(f"(SELECT count(*) FROM b{k})")
    return Sql(f"WITH {', '.join(parts)} SELECT {', '.join(counts)}"
               + (f", {_DURABLE}" if durable else ""))


@functools.cache
def _guarded(guard: Sql, statements: tuple[Sql, ...], durable: bool = True) -> Sql:
    """``guard`` and ``statements`` as one statement, for PostgreSQL: data-modifying CTEs,
    each of ``statements`` (which end in their WHERE clause) changing rows only if the guard
    changed one; the guard's row count. If ``durable``, ``set_config(..., true)`` (SET LOCAL
    for the statement's own transaction) makes its commit wait for the WAL flush as
    write()'s does."""
    parts = ["g AS (" + _PARAM.sub(":g_\\1", guard.sqlite) + " RETURNING 1)"]
    for k, statement in enumerate(statements):
        parts.append(f"b{k} AS ({_numbered(k, statement)} AND EXISTS (SELECT 1 FROM g) "
                     "RETURNING 1)")
    return Sql(f"WITH {', '.join(parts)} SELECT (SELECT count(*) FROM g)"
               + (f", {_DURABLE}" if durable else ""))


@functools.cache
def _in_turn(statement: Sql, notify: bool) -> Sql:
    """``statement`` (``INSERT ... SELECT ... WHERE ...``) as one durable statement for
    PostgreSQL that first takes the advisory lock ``:turn_lock`` (see Database.write_in_turn),
    and notifies ``:channel`` at commit if ``notify``."""
    head, where, tail = statement.sqlite.partition(" WHERE ")
    if not head.lstrip().upper().startswith("INSERT INTO ") or " SELECT " not in head.upper() \
            or " FROM " in head.upper() or not where:
        raise ValueError(f"not an INSERT ... SELECT ... WHERE: {statement.sqlite}")
    notifying = ", pg_notify(:channel, '')" if notify else ""
    return Sql("WITH turn AS (SELECT pg_advisory_xact_lock(:turn_lock), "
               f"{_DURABLE}{notifying}) "
               f"{head} FROM turn WHERE {tail}")


class _Unchanged(Exception):
    """The guard of Database.write_guarded changed no row: its transaction is rolled back."""


class Rows(NamedTuple):
    rows: list[Any]  # tuples (or rows that index like them)
    rowcount: int

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Connection(Protocol):
    """What the store's queries use: SQLAlchemy statements, and ``Sql`` run by the driver."""

    async def execute(self, statement: Executable, parameters: Any = None
                      ) -> CursorResult[Any]: ...

    async def run_sync(self, fn: Callable[[sa_engine.Connection], T]) -> T: ...

    async def sql(self, statement: Sql, params: dict[str, Any] | None = None) -> Rows: ...

    async def sql_many(self, statement: Sql, rows: list[dict[str, Any]]) -> None: ...


class _LoopConnection:
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


class _PgConnection:
    """SQLAlchemy's async connection, with ``Sql`` run on the asyncpg connection under it.

    The connection is in autocommit mode as far as SQLAlchemy knows: ``Database.write``
    opens and ends the transaction itself, so both kinds of statement run inside it.
    asyncpg's errors are raised as SQLAlchemy's (a value PostgreSQL cannot store is a
    ``DataError``, a lost connection an ``OperationalError``), as the rest of the server
    expects."""

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


def _pg_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


_PG_ERRORS = _pg_errors()


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int) -> sa_engine.Engine:
    """``immediate``: the writer's engine, whose transactions begin with BEGIN IMMEDIATE and
    which leaves WAL checkpoints to ``Database``."""
    pragmas = (*_SQLITE_PRAGMAS, "PRAGMA wal_autocheckpoint=0") if immediate \
        else _SQLITE_PRAGMAS
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


_NOTIFY = Sql("SELECT pg_notify(:channel, :payload)")
# Every server process holds this advisory lock (shared) while it runs (Database.listen).
PRESENCE_LOCK = 7236002
_HOLD_PRESENCE = "SELECT pg_advisory_lock_shared($1::bigint)"
# Its holders: a bigint advisory key k shows as classid k >> 32, objid k & 0xffffffff.
_PRESENT = Sql("SELECT count(DISTINCT pid) FILTER (WHERE pid <> :own), "
               "coalesce(bool_or(pid = :own), false) FROM pg_locks "
               "WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = :key "
               "AND objsubid = 1 AND database = "
               "(SELECT oid FROM pg_database WHERE datname = current_database())")


# PostgreSQL sessions commit without waiting for the WAL flush (see write_together); a
# transaction of write() waits, as PostgreSQL does by default. One round trip for both.
_BEGIN_DURABLE = "BEGIN; SET LOCAL synchronous_commit TO on"


def turn_lock(key: str) -> int:
    """The PostgreSQL advisory lock that ``Database.write(turn=key)`` takes: a 64-bit id."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big",
                          signed=True)


class Listener:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def close(self) -> None:
        await self._conn.close()


class Database:
    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._write_lock = asyncio.Lock()
        self._presence_pid: int | None = None  # the backend holding PRESENCE_LOCK for us
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._sqlite_writer = _sqlite_engine(url, immediate=True, pool_size=1)
            self._sqlite_reader = _sqlite_engine(url, immediate=False, pool_size=8)
            # Writes take turns (the lock), so one connection serves them all, kept open:
            # taking it from the pool for each transaction costs as much as a statement.
            self._writer: sa_engine.Connection | None = None
            # WAL checkpoints run in a thread of their own (see _after_commit), not in the
            # commit that happens to cross SQLite's threshold, in the event loop.
            self._sqlite_file = path if path and path != ":memory:" else None
            self._commits = 0
            self._checkpointer: sqlite3.Connection | None = None
            self._checkpointing: asyncio.Task[None] | None = None
            self.checkpoints = 0  # done so far
        else:
            # Small per process: several servers and workers share PostgreSQL's
            # max_connections (100 by default), and each statement holds a connection briefly.
            # No overflow: connections beyond the pool would be opened and closed again under
            # load (a new server process for PostgreSQL each time); waiting for one is cheaper.
            # No ping before each use (two round trips per transaction): a connection found
            # broken fails its request with 503, and SQLAlchemy then drops the whole pool, so
            # the requests after it reconnect.
            # Commits wait for the WAL flush only in write() (see there): the writes that
            # do not wait are the volatile ones of write_together().
            self._engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=0, pool_timeout=60,
                connect_args={"server_settings": {"synchronous_commit": "off"}})
            # Reads outside a transaction: under READ COMMITTED each statement sees what was
            # committed when it started either way, and BEGIN and ROLLBACK around a read
            # are two more round trips to the server. Writes begin and end their own (see
            # write()), so SQLAlchemy keeps out of transactions altogether.
            self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        if self.is_sqlite:
            with self._sqlite_reader.connect() as conn:
                yield _LoopConnection(conn)
        else:
            async with self._pg_connection() as conn:
                yield conn

    @asynccontextmanager
    async def write(self, turn: str | None = None) -> AsyncIterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises. Its
        commit is durable (on PostgreSQL it waits for the WAL flush; see write_together
        for the writes that need not). With ``turn``, it starts once no other transaction
        with the same ``turn`` is under way, so that what it reads cannot change before it
        writes: on PostgreSQL an advisory lock held until it ends, taken with BEGIN in the
        same round trip; on SQLite write transactions take turns anyway."""
        if self.is_sqlite:
            async with self._write_lock:
                conn = self._writer
                if conn is None or conn.invalidated or conn.closed:
                    conn = self._writer = self._sqlite_writer.connect()
                with conn.begin():
                    yield _LoopConnection(conn)
            self._after_commit()
        else:
            async with self._pg_connection() as pg:
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

    def _after_commit(self) -> None:
        """Every ``CHECKPOINT_EVERY`` SQLite write transactions, copy the WAL's pages into the
        database file in a thread (a passive checkpoint: writers and readers go on meanwhile).
        SQLite's own checkpoint would run inside the committing transaction, in the event
        loop, every 1,000 pages: several milliseconds (the copy and an fsync of the database
        file) that every stream would wait for."""
        self._commits += 1
        if self._commits < CHECKPOINT_EVERY or self._sqlite_file is None or (
                self._checkpointing is not None and not self._checkpointing.done()):
            return
        self._commits = 0
        self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_now)
            self.checkpoints += 1
        except Exception:
            log.exception("WAL checkpoint failed (the next one will try again)")

    def _checkpoint_now(self) -> None:
        if self._checkpointer is None:
            assert self._sqlite_file is not None
            self._checkpointer = sqlite3.connect(self._sqlite_file, isolation_level=None,
                                                 check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def write_together(self, statements: list[tuple[Sql, dict[str, Any]]],
                             durable: bool = False) -> list[int]:
        """Writes that stand or fall together, none reading what another one changes: the
        row count of each. On PostgreSQL they go as one statement, atomic by itself, in one
        round trip (a transaction takes BEGIN, each statement and COMMIT), and unless
        ``durable`` their commit does not wait for the WAL to reach the disk: a crash of
        PostgreSQL itself can lose the last fraction of a second of them, as SQLite's WAL
        (synchronous=NORMAL) can on a power loss. A later durable commit makes them durable
        too."""
        if self.is_sqlite:
            async with self.write() as conn:
                return [(await conn.sql(statement, params)).rowcount
                        for statement, params in statements]
        combined = len(statements) > 1 or durable  # (one statement as it is otherwise)
        if combined:
            statement = _together(tuple(statement for statement, _ in statements), durable)
            params = _numbered_params(statements)
        else:
            statement, params = statements[0]
        async with self._pg_connection() as conn:
            result = await conn.sql(statement, params)
        if not combined:
            return [result.rowcount]
        return [int(n) for n in result.rows[0][:len(statements)]]

    async def write_guarded(self, guard: tuple[Sql, dict[str, Any]],
                            statements: list[tuple[Sql, dict[str, Any]]],
                            durable: bool = True) -> bool:
        """``statements`` made only if ``guard`` (a compare-and-set write) changes a row, and
        all of them at once: whether it did. Durably, as a write() transaction, if
        ``durable``; else as write_together's writes. On
        PostgreSQL that is one statement in one round trip (see _guarded) instead of BEGIN,
        each statement and COMMIT. The guard changes its row first, so of two writers that
        also lock the statements' rows, the one that takes them before the guard's row
        could wait for the other until PostgreSQL ends one of them as a deadlock."""
        for statement, _ in statements:
            if " WHERE " not in statement.sqlite.upper():
                raise ValueError(f"not a statement that ends in its WHERE clause: "
                                 f"{statement.sqlite}")
        if self.is_sqlite:
            try:
                async with self.write() as conn:
                    if not (await conn.sql(*guard)).rowcount:
                        raise _Unchanged
                    for statement, params in statements:
                        await conn.sql(statement, params)
            except _Unchanged:
                return False
            return True
        together = _guarded(guard[0], tuple(statement for statement, _ in statements), durable)
        params = {f"g_{name}": value for name, value in guard[1].items()}
        params.update(_numbered_params(statements))
        async with self._pg_connection() as conn:
            result = await conn.sql(together, params)
        return bool(result.rows[0][0])

    async def write_in_turn(self, turn: str, statement: Sql, params: dict[str, Any],
                            notify: str | None = None) -> int:
        """One durable ``INSERT ... SELECT ... WHERE ...`` made as if in ``write(turn=turn)``
        (after any transaction with the same turn), whose WHERE checks what it depends on;
        ``notify``: a channel NOTIFY'd at commit (as ``notify``). Its row count. On
        PostgreSQL one round trip instead of four (BEGIN with the lock, a read, the write,
        COMMIT): the statement takes the lock first. Its checks read the rows as they were
        when it began, before the lock was granted, so what they protect needs a constraint
        as well (two such writes may both pass them; one then fails on the constraint)."""
        together = _in_turn(statement, notify is not None)  # (checks the statement's form)
        if self.is_sqlite:
            async with self.write() as conn:
                return (await conn.sql(statement, params)).rowcount
        params = {**params, "turn_lock": turn_lock(turn),
                  **({"channel": notify} if notify else {})}
        async with self._pg_connection() as conn:
            return (await conn.sql(together, params)).rowcount

    @asynccontextmanager
    async def _pg_connection(self) -> AsyncIterator[_PgConnection]:
        """A connection from the pool, given back at the end without the task that
        SQLAlchemy's ``async with`` runs the return in (to finish it if the caller is
        cancelled): waiting for that task costs two turns of the event loop, milliseconds
        under load. Here the return does no I/O, so nothing can interrupt it: no transaction
        is left open (``read`` opens none, ``write`` ends its own), and there is no reset
        round trip in autocommit mode. A connection whose transaction did not end (its
        task was cancelled in BEGIN, COMMIT or ROLLBACK) is closed instead."""
        aconn = await self._autocommit.connect()
        conn = None
        try:
            raw = (await aconn.get_raw_connection()).driver_connection
            conn = _PgConnection(aconn, raw)
            yield conn
        finally:
            if conn is not None and conn.in_transaction:
                # Cancelled while its transaction ended (or began): closed at once, so
                # that no later request runs in what is left of it.
                conn.terminate()
                with contextlib.suppress(Exception):
                    await aconn.invalidate()
            await aconn.close()

    async def migrate(self) -> None:
        async with self.write() as conn:
            if not self.is_sqlite:
                # Several processes may start at once on one PostgreSQL.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7236001)"))
            await conn.run_sync(migrate.upgrade)
        log.info("database ready: %s", self.describe())

    async def listen(self, callbacks: dict[str, Callable[[str], None]]) -> Listener:
        """PostgreSQL LISTEN on a connection of its own; each channel's callback gets the
        payloads sent to it."""
        import asyncpg

        dsn = self._engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        conn = await asyncpg.connect(dsn)
        if self._presence_pid is None:  # on one connection, for the process's life (presence)
            self._presence_pid = conn.get_server_pid()
            await conn.execute(_HOLD_PRESENCE, PRESENCE_LOCK)
        for channel, callback in callbacks.items():
            await conn.add_listener(
                channel, lambda _c, _pid, _ch, payload, cb=callback: cb(payload))
        return Listener(conn)

    async def presence(self) -> tuple[bool, int]:
        """Whether this process is seen using the database, and how many other server
        processes are: on PostgreSQL, the holders of PRESENCE_LOCK (each process holds it on
        its first ``listen`` connection; if that connection was lost, this one is not seen).
        On SQLite (True, 0): one process uses it."""
        if self.is_sqlite:
            return True, 0
        async with self._pg_connection() as conn:
            row = (await conn.sql(_PRESENT, {"key": PRESENCE_LOCK,
                                             "own": self._presence_pid or 0})).rows[0]
        return bool(row[1]), int(row[0])

    async def notify(self, conn: Connection, channel: str, payload: str = "") -> None:
        """NOTIFY listeners in other processes when ``conn``'s transaction commits; nothing on
        SQLite, where all work happens in one process."""
        if not self.is_sqlite:
            await conn.sql(_NOTIFY, {"channel": channel, "payload": payload})

    def describe(self) -> str:
        engine = self._sqlite_writer if self.is_sqlite else self._engine
        return engine.url.render_as_string(hide_password=True)

    async def close(self) -> None:
        if self.is_sqlite:
            if self._checkpointing is not None:
                await asyncio.wait([self._checkpointing])
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._sqlite_writer.dispose()
            self._sqlite_reader.dispose()
        else:
            await self._engine.dispose()
