"""Vector stores, their files and file batches, and search: /v1/vector_stores on the
retrieval engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vtai.server.errors import bad_request, not_found
from vtai.server.protocol.lists import ListParams
from vtai.server.protocol.vector_stores import (
    AutoStrategy,
    FileBatchCreate,
    SearchRequest,
    StaticStrategy,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreModify,
)
from vtai.server.retrieval import lexical, stores
from vtai.server.retrieval.chunking import AUTO, Strategy
from vtai.server.retrieval.engine import Retrieval
from vtai.server.services.references import require_files
from vtai.server.store import objects, tables
from vtai.server.store.objects import Page
from vtai.server.store.sql import Connection

vs, vsf, vsb = tables.vector_stores, tables.vector_store_files, tables.vector_store_file_batches


def strategy_of(value: AutoStrategy | StaticStrategy | None) -> Strategy:
    """A request's chunking_strategy (none: auto)."""
    if isinstance(value, StaticStrategy):
        return Strategy(value.static.max_chunk_size_tokens, value.static.chunk_overlap_tokens)
    return AUTO


async def _store(conn: Connection, project: str, store_id: str) -> dict[str, Any]:
    store = await objects.get_object(conn, vs, store_id, project)
    if store is None:
        raise not_found("vector store", store_id)
    return store


async def _file(conn: Connection, project: str, store_id: str, file_id: str) -> dict[str, Any]:
    await _store(conn, project, store_id)
    obj = await stores.get_file(conn, store_id, file_id)
    if obj is None:
        raise not_found("vector store file", file_id)
    return obj


async def _batch(conn: Connection, project: str, store_id: str, batch_id: str
                 ) -> dict[str, Any]:
    batch = await objects.get_object(conn, vsb, batch_id, project)
    if batch is None or batch["vector_store_id"] != store_id:
        raise not_found("vector store file batch", batch_id)
    return batch


class VectorStores:
    def __init__(self, retrieval: Retrieval) -> None:
        self.retrieval = retrieval
        self.db = retrieval.db
        self.max_batch_files = retrieval.settings.max_batch_files

    def _check_batch_size(self, count: int, param: str) -> None:
        if count > self.max_batch_files:
            raise bad_request(
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{self.max_batch_files}, but got an array with length {count} instead.",
                param, "invalid_value")

    async def _add(self, conn: Connection, project: str, store: dict[str, Any],
                   file_ids: list[str], attributes: dict[str, Any] | None, strategy: Strategy,
                   batch_id: str | None = None,
                   per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] | None = None
                   ) -> list[dict[str, Any]]:
        await require_files(conn, project, file_ids)
        return await self.retrieval.add_files(conn, project, store, file_ids, attributes,
                                              strategy, batch_id, per_file)

    # stores ----------------------------------------------------------------------------------

    async def create(self, project: str, body: VectorStoreCreate) -> str:
        self._check_batch_size(len(body.file_ids), "file_ids")
        store = stores.new_store(
            body.name, body.metadata,
            body.expires_after.model_dump() if body.expires_after else None, body.description)
        async with self.db.write() as conn:
            await stores.insert_store(conn, project, store)
            if body.file_ids:
                await self._add(conn, project, store, body.file_ids, None,
                                strategy_of(body.chunking_strategy))
            data = await objects.get_data(conn, vs, store["id"], project)
        self.retrieval.wake()
        return data or objects.dumps(store)

    async def list(self, project: str, page: ListParams) -> Page:
        async with self.db.read() as conn:
            return await objects.list_page(conn, vs, [vs.c.project_id == project],
                                           limit=page.limit, order=page.order,
                                           after=page.after, before=page.before)

    async def retrieve(self, project: str, store_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await _store(conn, project, store_id)

    async def modify(self, project: str, store_id: str, body: VectorStoreModify) -> str:
        async with self.db.write() as conn:
            store = await stores.lock_store(conn, store_id, project)
            if store is None:
                raise not_found("vector store", store_id)
            fields = body.model_fields_set
            if "name" in fields:
                store["name"] = body.name or ""
            if "metadata" in fields:
                store["metadata"] = body.metadata or {}
            if "expires_after" in fields and store["status"] != "expired":
                store["expires_after"] = body.expires_after.model_dump() \
                    if body.expires_after else None
                store["expires_at"] = None
                stores.touch(store)
            return await stores.save_store(conn, store)

    async def delete(self, project: str, store_id: str) -> None:
        async with self.db.write() as conn:
            if await stores.lock_store(conn, store_id, project) is None:
                raise not_found("vector store", store_id)
            await stores.delete_store(conn, store_id)
        self.retrieval.forget(store_id)

    # files -----------------------------------------------------------------------------------

    async def add_file(self, project: str, store_id: str, body: VectorStoreFileCreate
                       ) -> dict[str, Any]:
        async with self.db.write() as conn:
            store = await self.retrieval.usable_store(conn, project, store_id)
            added = await self._add(conn, project, store, [body.file_id], body.attributes,
                                    strategy_of(body.chunking_strategy))
        self.retrieval.wake()
        return added[0]

    async def list_files(self, project: str, store_id: str, page: ListParams,
                         status: str | None, batch_id: str | None = None) -> Page:
        async with self.db.read() as conn:
            if batch_id is not None:
                await _batch(conn, project, store_id, batch_id)
            else:
                await _store(conn, project, store_id)
            where = [vsf.c.vector_store_id == store_id]
            if status is not None:
                where.append(vsf.c.status == status)
            if batch_id is not None:
                where.append(vsf.c.batch_id == batch_id)
            return await objects.list_page(conn, vsf, where, limit=page.limit,
                                           order=page.order, after=page.after,
                                           before=page.before)

    async def retrieve_file(self, project: str, store_id: str, file_id: str
                            ) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await _file(conn, project, store_id, file_id)

    async def update_file(self, project: str, store_id: str, file_id: str,
                          body: VectorStoreFileUpdate) -> str:
        async with self.db.write() as conn:
            obj = await _file(conn, project, store_id, file_id)
            obj["attributes"] = body.attributes or {}
            return await stores.save_file(conn, obj)

    async def delete_file(self, project: str, store_id: str, file_id: str) -> None:
        async with self.db.write() as conn:
            store = await stores.lock_store(conn, store_id, project)
            if store is None:
                raise not_found("vector store", store_id)
            if not await stores.detach(conn, store, file_id):
                raise not_found("vector store file", file_id)

    async def file_content(self, project: str, store_id: str, file_id: str) -> dict[str, Any]:
        """The file's text as its chunks hold it."""
        c = tables.vector_store_chunks
        async with self.db.read() as conn:
            await _file(conn, project, store_id, file_id)
            rows = (await conn.execute(select(c.c.start_char, c.c.text).where(
                c.c.vector_store_id == store_id, c.c.file_id == file_id)
                .order_by(c.c.position))).all()
        # Chunks overlap: each adds the text past where the previous one ended.
        text, end = "", 0
        for row in rows:
            text += row.text[max(0, end - row.start_char):]
            end = max(end, row.start_char + len(row.text))
        data = [{"type": "text", "text": text}] if rows else []
        return {"object": "vector_store.file_content.page", "data": data,
                "has_more": False, "next_page": None}

    # batches ---------------------------------------------------------------------------------

    async def create_batch(self, project: str, store_id: str, body: FileBatchCreate) -> str:
        if body.files is not None:
            self._check_batch_size(len(body.files), "files")
        else:
            self._check_batch_size(len(body.file_ids or []), "file_ids")
        strategy = strategy_of(body.chunking_strategy)
        per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] = {}
        if body.files is not None:
            for item in body.files:
                per_file[item.file_id] = (item.attributes, strategy_of(item.chunking_strategy))
        file_ids = list(per_file) if body.files is not None else list(body.file_ids or [])
        batch = stores.new_batch(store_id)
        async with self.db.write() as conn:
            store = await self.retrieval.usable_store(conn, project, store_id)
            await objects.insert_object(conn, vsb, batch, project, vector_store_id=store_id)
            await self._add(conn, project, store, file_ids, body.attributes, strategy,
                            batch["id"], per_file or None)
            await stores.recount_batch(conn, batch["id"])
            data = await objects.get_data(conn, vsb, batch["id"], project)
        self.retrieval.wake()
        return data or objects.dumps(batch)

    async def retrieve_batch(self, project: str, store_id: str, batch_id: str
                             ) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await _batch(conn, project, store_id, batch_id)

    async def cancel_batch(self, project: str, store_id: str, batch_id: str) -> str:
        async with self.db.write() as conn:
            batch = await _batch(conn, project, store_id, batch_id)
            if batch["status"] != stores.IN_PROGRESS:
                raise bad_request(f"Cannot cancel a batch with status '{batch['status']}'.")
            return await stores.cancel_batch(conn, batch)

    # search ----------------------------------------------------------------------------------

    async def search(self, project: str, store_id: str, body: SearchRequest) -> dict[str, Any]:
        queries = body.queries()
        if body.rewrite_query:
            queries = [" ".join(lexical.terms(q)) or q for q in queries]
        async with self.db.read() as conn:
            store = await _store(conn, project, store_id)
            if stores.is_expired(store):
                raise bad_request(f"Vector store {store_id} has expired and can no "
                                  "longer be used.")
        allowed = None
        if body.filters is not None:
            allowed = await self.retrieval.allowed_files([store_id], body.filters.model_dump())
        await self.retrieval.mark_active(store_id, store)
        threshold = body.ranking_options.score_threshold if body.ranking_options else 0.0
        hits = await self.retrieval.search([store_id], queries, body.max_num_results,
                                           allowed, threshold)
        return {
            "object": "vector_store.search_results.page", "search_query": queries,
            "data": [{"file_id": h.file_id, "filename": h.filename, "score": h.score,
                      "attributes": h.attributes or {},
                      "content": [{"type": "text", "text": h.text}]} for h in hits],
            "has_more": False, "next_page": None,
        }
