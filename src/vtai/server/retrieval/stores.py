"""Vector stores, their files and file batches as stored rows, and how their counts follow the
files' statuses.

A store's and a batch's ``file_counts``, a store's ``usage_bytes`` and ``status`` are kept in
their stored JSON and recounted in every transaction that changes their files, after taking
the store's row lock (PostgreSQL), so concurrent ingestions never count from a stale view.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from openai.types import VectorStore
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch
from sqlalchemy import and_, delete, func, insert, or_, select, text, update

from vtai.server import ids
from vtai.server.retrieval.chunking import Strategy
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.db import Connection

DAY = 86_400
IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "in_progress", "completed", "failed", "cancelled"
STATUSES = (IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
WORK_CHANNEL = "vtai_file_search"  # NOTIFY: files are waiting to be ingested

vs, vsf, vsb, chunks = (tables.vector_stores, tables.vector_store_files,
                        tables.vector_store_file_batches, tables.vector_store_chunks)


def _counts(rows: Iterable[Any]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, number in rows:
        counts[status] = int(number)
    counts["total"] = sum(counts[s] for s in STATUSES)
    return counts


def new_store(name: str | None, metadata: dict[str, str] | None,
              expires_after: dict[str, Any] | None, description: str | None = None
              ) -> dict[str, Any]:
    now = ids.now()
    obj: dict[str, Any] = {
        "id": ids.new_id("vs_"), "object": "vector_store", "created_at": now,
        "name": name or "", "usage_bytes": 0, "file_counts": _counts([]),
        "status": COMPLETED, "expires_after": expires_after,
        "expires_at": now + expires_after["days"] * DAY if expires_after else None,
        "last_active_at": now, "metadata": metadata or {},
    }
    if description is not None:
        obj["description"] = description
    return shape_store(obj)


def shape_store(store: dict[str, Any]) -> dict[str, Any]:
    shaped_store = shaped(VectorStore, store)
    if shaped_store.get("expires_after") is None:  # an object when present, never null
        shaped_store.pop("expires_after", None)
    return shaped_store


async def insert_store(conn: Connection, project: str, store: dict[str, Any]) -> None:
    await objects.insert_object(conn, vs, store, project, expires_at=store["expires_at"])


async def save_store(conn: Connection, store: dict[str, Any]) -> str:
    # The expiry sweep looks at the column: an expired store is not looked at again.
    expires_at = None if store["status"] == "expired" else store["expires_at"]
    return await objects.save_object(conn, vs, shape_store(store), expires_at=expires_at)


async def lock_store(conn: Connection, store_id: str, project: str | None = None
                     ) -> dict[str, Any] | None:
    """The store, its row locked until the transaction ends (PostgreSQL; SQLite's writes are
    serialized already)."""
    query = select(vs.c.data).where(vs.c.id == store_id).with_for_update()
    if project is not None:
        query = query.where(vs.c.project_id == project)
    data = (await conn.execute(query)).scalar()
    return None if data is None else orjson.loads(data)


def touch(store: dict[str, Any]) -> None:
    """The store was used: its idle expiry starts again."""
    store["last_active_at"] = ids.now()
    if store.get("expires_after") and store["status"] != "expired":
        store["expires_at"] = store["last_active_at"] + store["expires_after"]["days"] * DAY


def is_expired(store: dict[str, Any], now: int | None = None) -> bool:
    expires_at = store.get("expires_at")
    return store["status"] == "expired" or (
        expires_at is not None and expires_at <= (now or ids.now()))


async def recount_store(conn: Connection, store: dict[str, Any], usage_change: int = 0
                        ) -> str:
    """Save the store with its files' counts and status, its usage changed by
    ``usage_change`` bytes; returns its JSON."""
    rows = (await conn.execute(select(vsf.c.status, func.count()).where(
        vsf.c.vector_store_id == store["id"]).group_by(vsf.c.status))).all()
    store["file_counts"] = _counts(rows)
    store["usage_bytes"] = max(0, int(store.get("usage_bytes") or 0) + usage_change)
    if store["status"] != "expired":
        store["status"] = IN_PROGRESS if store["file_counts"][IN_PROGRESS] else COMPLETED
    return await save_store(conn, store)


async def recount_batch(conn: Connection, batch_id: str) -> None:
    batch = await _batch(conn, batch_id)
    if batch is None:
        return
    rows = (await conn.execute(select(vsf.c.status, func.count()).where(
        vsf.c.batch_id == batch_id, vsf.c.vector_store_id == batch["vector_store_id"])
        .group_by(vsf.c.status))).all()
    counts = _counts(rows)
    batch["file_counts"] = counts
    if batch["status"] == IN_PROGRESS and not counts[IN_PROGRESS]:
        done = counts[COMPLETED] or not counts["total"]
        batch["status"] = COMPLETED if done or counts[CANCELLED] else FAILED
    await objects.save_object(conn, vsb, shaped(VectorStoreFileBatch, batch))


async def _batch(conn: Connection, batch_id: str) -> dict[str, Any] | None:
    data = (await conn.execute(select(vsb.c.data).where(vsb.c.id == batch_id))).scalar()
    return None if data is None else orjson.loads(data)


def new_batch(store_id: str) -> dict[str, Any]:
    return shaped(VectorStoreFileBatch, {
        "id": ids.new_id("vsfb_"), "object": "vector_store.files_batch",
        "created_at": ids.now(), "vector_store_id": store_id, "status": IN_PROGRESS,
        "file_counts": _counts([]),
    })


def new_file(store_id: str, file_id: str, attributes: dict[str, Any] | None,
             strategy: Strategy) -> dict[str, Any]:
    return shaped(VectorStoreFile, {
        "id": file_id, "object": "vector_store.file", "usage_bytes": 0,
        "created_at": ids.now(), "vector_store_id": store_id, "status": IN_PROGRESS,
        "last_error": None, "attributes": attributes or {},
        "chunking_strategy": strategy.to_object(),
    })


async def get_file(conn: Connection, store_id: str, file_id: str) -> dict[str, Any] | None:
    data = (await conn.execute(select(vsf.c.data).where(
        vsf.c.vector_store_id == store_id, vsf.c.id == file_id))).scalar()
    return None if data is None else orjson.loads(data)


async def save_file(conn: Connection, obj: dict[str, Any], **columns: Any) -> str:
    obj = shaped(VectorStoreFile, obj)
    data = objects.dumps(obj)
    await conn.execute(update(vsf).where(
        vsf.c.vector_store_id == obj["vector_store_id"], vsf.c.id == obj["id"]).values(
        data=data, status=obj["status"], **columns))
    return data


async def attach(conn: Connection, project: str, store: dict[str, Any], file_ids: list[str],
                 attributes: dict[str, Any] | None, strategy: Strategy,
                 batch_id: str | None = None,
                 per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] | None = None
                 ) -> list[dict[str, Any]]:
    """Add files to a locked store (in progress until ingested). A file already there keeps
    its chunks unless it failed or was cancelled, which tries it again; either way it joins
    the batch."""
    out = []
    for file_id in dict.fromkeys(file_ids):
        attrs, strat = (per_file or {}).get(file_id, (attributes, strategy))
        existing = await get_file(conn, store["id"], file_id)
        if existing is not None and existing["status"] in (COMPLETED, IN_PROGRESS):
            if batch_id is not None:
                await conn.execute(update(vsf).where(
                    vsf.c.vector_store_id == store["id"], vsf.c.id == file_id).values(
                    batch_id=batch_id))
            out.append(existing)
            continue
        obj = new_file(store["id"], file_id, attrs, strat)
        if existing is not None:
            await save_file(conn, obj, batch_id=batch_id, worker_id=None,
                            lease_expires_at=None, attempt=0)
        else:
            await conn.execute(insert(vsf).values(
                vector_store_id=store["id"], id=file_id, project_id=project,
                created_at=obj["created_at"], batch_id=batch_id, status=IN_PROGRESS,
                data=objects.dumps(obj)))
        out.append(obj)
    return out


async def add_files(conn: Connection, project: str, store: dict[str, Any], file_ids: list[str],
                    attributes: dict[str, Any] | None, strategy: Strategy,
                    batch_id: str | None = None,
                    per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] | None = None
                    ) -> list[dict[str, Any]]:
    """``attach``, then the store's counts, its activity and ingestion's wake-up (which
    other processes get when the transaction commits; this one's ingestion is woken by the
    caller, or finds the files at its next poll)."""
    added = await attach(conn, project, store, file_ids, attributes, strategy, batch_id,
                         per_file)
    touch(store)
    await recount_store(conn, store)
    await notify_work(conn)
    return added


async def store_model(conn: Connection, store_id: str, besides_file: str | None = None
                      ) -> str | None:
    """The embedding model of the store's chunks (those of files other than
    ``besides_file``): its first indexed file's, which every later file keeps. None while
    it has no chunks."""
    query = select(chunks.c.model).where(chunks.c.vector_store_id == store_id)
    if besides_file is not None:
        query = query.where(chunks.c.file_id != besides_file)
    return (await conn.execute(query.limit(1))).scalar()


async def remove_chunks(conn: Connection, store_id: str, file_id: str | None = None) -> None:
    where = [chunks.c.vector_store_id == store_id]
    if file_id is not None:
        where.append(chunks.c.file_id == file_id)
    await conn.execute(delete(chunks).where(*where))
    await bump_index(conn, store_id)


async def bump_index(conn: Connection, store_id: str) -> None:
    await conn.execute(update(vs).where(vs.c.id == store_id).values(
        index_version=vs.c.index_version + 1))


async def detach(conn: Connection, store: dict[str, Any], file_id: str) -> bool:
    """Remove a file from a locked store and from its search index."""
    row = (await conn.execute(select(vsf.c.batch_id, vsf.c.data).where(
        vsf.c.vector_store_id == store["id"], vsf.c.id == file_id))).first()
    if row is None:
        return False
    await objects.delete_objects(conn, vsf, vsf.c.vector_store_id == store["id"],
                                 vsf.c.id == file_id)
    batch_id = row.batch_id
    await remove_chunks(conn, store["id"], file_id)
    await recount_store(conn, store, -int(orjson.loads(row.data).get("usage_bytes") or 0))
    if batch_id is not None:
        await recount_batch(conn, batch_id)
    return True


async def remove_file_everywhere(conn: Connection, project: str, file_id: str) -> None:
    """A deleted file leaves every vector store of its project."""
    store_ids = (await conn.execute(select(vsf.c.vector_store_id).where(
        vsf.c.id == file_id, vsf.c.project_id == project))).scalars().all()
    for store_id in store_ids:
        store = await lock_store(conn, store_id)
        if store is not None:
            await detach(conn, store, file_id)


async def delete_store(conn: Connection, store_id: str) -> None:
    await conn.execute(delete(chunks).where(chunks.c.vector_store_id == store_id))
    for table in (vsf, vsb):
        await conn.execute(delete(table).where(table.c.vector_store_id == store_id))
    await conn.execute(delete(vs).where(vs.c.id == store_id))


async def cancel_batch(conn: Connection, batch: dict[str, Any]) -> str:
    """Files of the batch not yet ingested are cancelled; ingestion in flight is discarded
    when it finds its file no longer in progress."""
    store = await lock_store(conn, batch["vector_store_id"])
    pending = (await conn.execute(select(vsf.c.data).where(
        vsf.c.batch_id == batch["id"], vsf.c.vector_store_id == batch["vector_store_id"],
        vsf.c.status == IN_PROGRESS))).scalars().all()
    for data in pending:
        obj = orjson.loads(data)
        obj["status"] = CANCELLED
        await save_file(conn, obj, worker_id=None, lease_expires_at=None)
    batch["status"] = CANCELLED
    await objects.save_object(conn, vsb, shaped(VectorStoreFileBatch, batch))
    await recount_batch(conn, batch["id"])
    if store is not None:
        await recount_store(conn, store)
    return objects.dumps((await _batch(conn, batch["id"])) or batch)


def claimable(now: int) -> Any:
    """Files waiting for ingestion: in progress and not leased by a live worker."""
    return and_(vsf.c.status == IN_PROGRESS,
                or_(vsf.c.lease_expires_at.is_(None), vsf.c.lease_expires_at < now))


async def notify_work(conn: Connection) -> None:
    """Wake ingestion in every process once ``conn``'s transaction commits (PostgreSQL; on
    SQLite, ingestion runs in this process and finds the files when it next looks)."""
    dialect = await conn.run_sync(lambda sync: sync.dialect.name)
    if dialect == "postgresql":
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})
