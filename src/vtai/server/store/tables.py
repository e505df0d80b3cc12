"""Tables. Each API object is one row: the columns the server filters on, plus ``data``, the
object's JSON exactly as the API returns it (so reads return stored bytes unparsed)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Ids are time-ordered and compared as bytes for pagination: PostgreSQL must not use a locale.
IdType = String(64).with_variant(String(64, collation="C"), "postgresql")


def _object_table(name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...] = ()) -> Table:
    table = Table(
        name,
        metadata,
        Column("id", IdType, primary_key=True),
        Column("project_id", String(64), nullable=False),
        Column("created_at", BigInteger, nullable=False),
        *columns,
        Column("data", Text, nullable=False),
    )
    for cols in indexes:
        Index(f"ix_{name}_{'_'.join(cols)}", *(table.c[c] for c in cols))
    return table


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

assistants = _object_table("assistants", indexes=(("project_id", "id"),))

threads = _object_table("threads")

messages = _object_table(
    "messages",
    Column("thread_id", IdType, nullable=False),
    Column("run_id", IdType, nullable=True),
    indexes=(("thread_id", "id"),),
)

runs = _object_table(
    "runs",
    Column("thread_id", IdType, nullable=False),
    Column("status", String(32), nullable=False),
    # The lease of the worker executing the run (see runs/queue.py).
    Column("worker_id", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="0"),
    indexes=(("thread_id", "id"), ("status",)),
)

run_steps = _object_table(
    "run_steps",
    Column("thread_id", IdType, nullable=False),
    Column("run_id", IdType, nullable=False),
    indexes=(("run_id", "id"),),
)

# Every event a run streamed, for clients that reconnect (Last-Event-ID) and for streams
# served by another process than the one executing the run. Ids are time-ordered.
run_events = Table(
    "run_events",
    metadata,
    Column("id", IdType, primary_key=True),
    Column("run_id", IdType, nullable=False),
    Column("event", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_run_events_run_id_id", "run_id", "id"),
    Index("ix_run_events_created_at", "created_at"),
)

files = _object_table(
    "files",
    Column("purpose", String(32), nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    indexes=(("project_id", "id"),),
)
