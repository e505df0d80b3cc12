"""Whether a PostgreSQL commit waited for the WAL flush: by PostgreSQL's own WAL positions.
The server's connections commit without waiting unless told to; a durable write is one after
which the WAL is flushed past where it ended before the write (without the wait, the WAL
writer flushes within its 200 ms delay, after the check)."""

from __future__ import annotations

from vtai.server.store.db import Database, Sql

_INSERTED = Sql("SELECT CAST(pg_current_wal_insert_lsn() AS text)")
_FLUSHED_PAST = Sql(
    "SELECT pg_current_wal_flush_lsn() > CAST(CAST(:before AS text) AS pg_lsn)")


async def wal_end(db: Database) -> str:
    """Where the WAL ends now."""
    async with db.read() as conn:
        return str((await conn.sql(_INSERTED)).scalar())


async def flushed_past(db: Database, before: str) -> bool:
    """Whether the WAL is flushed past ``before`` (a wal_end)."""
    async with db.read() as conn:
        return bool((await conn.sql(_FLUSHED_PAST, {"before": before})).scalar())
