"""Tables. Each API object is one row: the columns the server filters on, plus ``data``, the
object's JSON exactly as the API returns it (so reads return stored bytes unparsed)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
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
    indexes=(("thread_id", "id"), ("run_id",)),
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

# The statuses of runs not finished yet (runs.states.ACTIVE, which a test keeps equal), as an
# SQL list: ``status IN ({ACTIVE_STATUSES})``.
ACTIVE_RUN_STATUSES = ("cancelling", "in_progress", "queued", "requires_action")
ACTIVE_STATUSES = ", ".join(f"'{status}'" for status in ACTIVE_RUN_STATUSES)

# A thread has at most one run not finished yet (migration 0006).
_ACTIVE_RUN = text(f"status IN ({ACTIVE_STATUSES})")
Index("ix_runs_active_thread", runs.c.thread_id, unique=True,
      postgresql_where=_ACTIVE_RUN, sqlite_where=_ACTIVE_RUN)

run_steps = _object_table(
    "run_steps",
    Column("thread_id", IdType, nullable=False),
    Column("run_id", IdType, nullable=False),
    indexes=(("run_id", "id"), ("thread_id", "id")),
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

# File bytes on PostgreSQL (store/pgblobs.py): a blob (named by its file's id) is its rows in
# ``seq`` order, 1 MiB each but the last (an empty blob: one empty row). On SQLite the bytes
# are files under the data dir and this table stays empty.
blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("blob_id", IdType, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# Vector stores (file_search). Their file_counts, usage_bytes and status live in ``data`` and
# change in the transaction that changes a file's status; ``index_version`` changes with the
# store's chunks, so a process holding the store's vectors in memory knows to reload them.
vector_stores = _object_table(
    "vector_stores",
    Column("expires_at", BigInteger, nullable=True),
    Column("index_version", Integer, nullable=False, server_default="0"),
    indexes=(("project_id", "id"),),
)

vector_store_file_batches = _object_table(
    "vector_store_file_batches",
    Column("vector_store_id", IdType, nullable=False),
    indexes=(("vector_store_id", "id"),),
)

# A file in a vector store; ``id`` is the file's id. Ingestion claims files in progress with a
# lease (``worker_id``, ``lease_expires_at``), as the run worker claims runs.
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("vector_store_id", IdType, primary_key=True),
    Column("id", IdType, primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("batch_id", IdType, nullable=True),
    Column("status", String(16), nullable=False),
    Column("worker_id", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("data", Text, nullable=False),
    Index("ix_vector_store_files_status", "status"),
    Index("ix_vector_store_files_id", "id"),
    Index("ix_vector_store_files_batch_id", "batch_id"),
)

# The search index: one row per chunk of a vector store file, with its embedding (float32
# bytes of ``model``). Migration 0004 adds the lexical index by hand: an FTS5 table kept in
# step by triggers on SQLite (so this table must not be rebuilt by a batch migration without
# them), a generated tsvector column with a GIN index on PostgreSQL.
vector_store_chunks = Table(
    "vector_store_chunks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("vector_store_id", IdType, nullable=False),
    Column("file_id", IdType, nullable=False),
    Column("position", Integer, nullable=False),
    Column("start_char", Integer, nullable=False),  # where the text starts in the file's text
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("model", String(128), nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Index("ix_vector_store_chunks_store_file", "vector_store_id", "file_id", "position"),
)

# Responses (the Responses API): the response object as it is returned, with the columns its
# worker claims it by (as runs). ``stored`` is 0 for a response made with ``store: false``:
# it exists while it executes, and is not returned afterwards.
responses = _object_table(
    "responses",
    Column("status", String(32), nullable=False),
    Column("conversation_id", IdType, nullable=True),
    Column("previous_response_id", IdType, nullable=True),
    Column("stored", Integer, nullable=False, server_default="1"),
    Column("worker_id", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="0"),
    indexes=(("project_id", "id"), ("status",)),
)

# Items that are not thread messages: a response's input and output items (``owner_id``: the
# response; ``kind`` "input" or "output"), and a conversation's items other than the messages
# a thread holds (``owner_id``: the conversation, which is a thread; ``kind`` "conversation").
# ``id`` is the item's id, which an item given back as input keeps, so it is not unique;
# ``seq`` orders them.
items = Table(
    "items",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("id", IdType, nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("owner_id", IdType, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_items_owner_id_seq", "owner_id", "seq"),
    Index("ix_items_id", "id"),
)

# Containers (the code interpreter's sessions named by the Containers API) and their files.
containers = _object_table(
    "containers",
    Column("status", String(16), nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    indexes=(("project_id", "id"),),
)

container_files = _object_table(
    "container_files",
    Column("container_id", IdType, nullable=False),
    Column("path", Text, nullable=False),
    indexes=(("container_id", "id"),),
)

# The code interpreter's sessions (a thread's, or a container's), for every process to see:
# which process holds a local kernel while it lives (``holder``, renewed until
# ``holder_expires_at``), a gateway kernel's id, and what the session did that later calls
# of any process must know (``state``: the input files placed, bytes copied out). ``ended``
# says why its last kernel went, for the note the next one starts with.
code_sessions = Table(
    "code_sessions",
    metadata,
    Column("session_id", IdType, primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("backend", String(16), nullable=False),
    Column("kernel_id", String(128), nullable=True),
    Column("holder", String(128), nullable=True),
    Column("holder_expires_at", BigInteger, nullable=True),
    Column("state", Text, nullable=False),
    Column("ended", Text, nullable=True),
    Column("last_used_at", BigInteger, nullable=False),
    Index("ix_code_sessions_backend_last_used_at", "backend", "last_used_at"),
)
