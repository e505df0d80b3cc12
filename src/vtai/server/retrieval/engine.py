"""The vector-store engine as the rest of the server uses it: the database, the search index,
the embedding models, and ingestion of attached files (in processes that execute runs).

The vector stores API (services/vector_stores.py) and the file_search tool both go through
it; it has no HTTP in it. See docs/file-search.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import func, select

from vtai.server import ids
from vtai.server.errors import bad_request, not_found
from vtai.server.retrieval import stores
from vtai.server.retrieval.chunking import Strategy
from vtai.server.retrieval.embedders import Embedders
from vtai.server.retrieval.filters import matches
from vtai.server.retrieval.ingest import Ingestor
from vtai.server.retrieval.search import Hit, SearchIndex
from vtai.server.retrieval.vectors import VectorCache
from vtai.server.settings import RetrievalSettings
from vtai.server.store import objects, tables
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.server.store.sql import Connection

log = logging.getLogger("vtai.file_search")

ACTIVE_WRITE_SECONDS = 60
WAIT_POLL_SECONDS = 0.2


class Retrieval:
    def __init__(self, settings: RetrievalSettings, db: Database, files: FileStore,
                 upstream: Mapping[str, str] | None) -> None:
        """``upstream``: the server's default model upstream (``base_url``, ``api_key``), if
        any: its embeddings model is new stores' when it serves one."""
        self.settings = settings
        self.db = db
        self.embedders = Embedders(settings, upstream)
        self.index = SearchIndex(db, self.embedders,
                                 VectorCache(settings.search_cache_mb << 20))
        self.ingestor = Ingestor(db, files, self.embedders, settings.search_lease_seconds,
                                 settings.search_max_file_tokens)

    async def start(self) -> None:
        """In a process that executes runs: ingestion, and the choice of new stores' model
        (in the background: start-up does not wait for it)."""
        self.embedders.start()
        await self.ingestor.start()
        if not self.db.is_sqlite:
            log.info("file search on PostgreSQL: words by tsvector, vectors searched exactly "
                     "in this process (pgvector is not used)")

    async def stop(self) -> None:
        await self.ingestor.stop()
        await self.embedders.close()

    def wake(self) -> None:
        """Files were attached: this process's ingestion looks at once (another process's
        is woken by the transaction's NOTIFY, see stores.add_files)."""
        self.ingestor.wake()

    async def usable_store(self, conn: Connection, project: str, store_id: str,
                           param: str | None = None) -> dict[str, Any]:
        """A store of this project that has not expired, locked for changes."""
        store = await stores.lock_store(conn, store_id, project)
        if store is None:
            raise not_found("vector store", store_id)
        if stores.is_expired(store):
            raise bad_request(f"Vector store {store_id} has expired and can no longer be used.",
                              param)
        return store

    async def mark_active(self, store_id: str, seen: dict[str, Any]) -> None:
        """The store was searched: its idle expiry starts again (written at most once a
        minute, so searches rarely write)."""
        if ids.now() - (seen.get("last_active_at") or 0) < ACTIVE_WRITE_SECONDS:
            return
        async with self.db.write() as conn:
            store = await stores.lock_store(conn, store_id)
            if store is not None and not stores.is_expired(store):
                stores.touch(store)
                await stores.save_store(conn, store)

    async def add_files(self, conn: Connection, project: str, store: dict[str, Any],
                        file_ids: list[str], attributes: dict[str, Any] | None,
                        strategy: Strategy, batch_id: str | None = None,
                        per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] | None = None
                        ) -> list[dict[str, Any]]:
        """Attach files of the project (checked by the caller) to a locked store; ingestion
        starts when the transaction commits (call ``wake`` after it)."""
        return await stores.add_files(conn, project, store, file_ids, attributes, strategy,
                                      batch_id, per_file)

    async def search(self, store_ids: list[str], queries: list[str], limit: int,
                     allowed: set[str] | None = None, threshold: float = 0.0) -> list[Hit]:
        """The best passages of the stores' files for ``queries`` (see search.py)."""
        return await self.index.search(store_ids, queries, limit, allowed, threshold)

    async def usable_store_ids(self, project: str, store_ids: list[str]) -> list[str]:
        """The project's stores among ``store_ids`` that have not expired, marked active
        (searched: their idle expiry starts again)."""
        usable = []
        async with self.db.read() as conn:
            for store_id in dict.fromkeys(store_ids):
                store = await objects.get_object(conn, tables.vector_stores, store_id, project)
                if store is not None and not stores.is_expired(store):
                    usable.append((store_id, store))
        for store_id, store in usable:
            await self.mark_active(store_id, store)
        return [store_id for store_id, _ in usable]

    async def wait_indexed(self, store_id: str, file_ids: list[str]) -> None:
        """Until the store's files among ``file_ids`` are indexed (or failed), at most
        ``search_wait_seconds``."""
        f = tables.vector_store_files
        deadline = time.monotonic() + self.settings.search_wait_seconds
        while time.monotonic() < deadline:
            async with self.db.read() as conn:
                pending = (await conn.execute(select(func.count()).where(
                    f.c.vector_store_id == store_id, f.c.id.in_(file_ids),
                    f.c.status == stores.IN_PROGRESS))).scalar()
            if not pending:
                return
            await asyncio.sleep(WAIT_POLL_SECONDS)

    async def allowed_files(self, store_ids: list[str], filters: dict[str, Any]
                            ) -> set[str]:
        """The indexed files of the stores whose attributes pass ``filters`` (a comparison
        or compound filter, as vector store searches take it)."""
        f = tables.vector_store_files
        async with self.db.read() as conn:
            rows = (await conn.execute(select(f.c.id, f.c.data).where(
                f.c.vector_store_id.in_(store_ids), f.c.status == stores.COMPLETED))).all()
        return {row.id for row in rows
                if matches(filters, orjson.loads(row.data).get("attributes") or {})}

    def forget(self, store_id: str) -> None:
        """A deleted store's vectors leave this process's memory."""
        self.index.cache.forget(store_id)
