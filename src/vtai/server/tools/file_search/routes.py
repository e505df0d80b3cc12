"""/v1/vector_stores: stores, their files, file batches and search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from starlette.responses import Response

from vtai.server.api.auth import project_id
from vtai.server.api.errors import bad_request, not_found
from vtai.server.api.pagination import ListParams, list_params
from vtai.server.api.responses import deleted, json_response
from vtai.server.store import objects, tables
from vtai.server.store.db import Connection
from vtai.server.tools.file_search import lexical, stores
from vtai.server.tools.file_search.chunking import Strategy
from vtai.server.tools.file_search.filters import matches
from vtai.server.tools.file_search.requests import (
    FileBatchCreate,
    SearchRequest,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreModify,
    strategy_of,
)
from vtai.server.tools.file_search.service import FileSearch

POLL_AFTER_MS = "200"  # the SDK's poll helpers wait this long between retrieves
StatusFilter = Literal["in_progress", "completed", "failed", "cancelled"]
vs, vsf, vsb = tables.vector_stores, tables.vector_store_files, tables.vector_store_file_batches


def _polled(data: str | bytes | dict[str, Any]) -> Response:
    response = json_response(data)
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


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


def _check_batch_size(fs: FileSearch, count: int, param: str) -> None:
    limit = fs.settings.max_batch_files
    if count > limit:
        raise bad_request(f"Invalid '{param}': array too long. Expected an array with maximum "
                          f"length {limit}, but got an array with length {count} instead.",
                          param, "invalid_value")


def router(fs: FileSearch) -> APIRouter:
    api = APIRouter(tags=["vector_stores"])

    @api.post("/vector_stores")
    async def create_vector_store(body: VectorStoreCreate,
                                  project: str = Depends(project_id)) -> Response:
        _check_batch_size(fs, len(body.file_ids), "file_ids")
        store = stores.new_store(
            body.name, body.metadata,
            body.expires_after.model_dump() if body.expires_after else None, body.description)
        async with fs.db.write() as conn:
            await stores.insert_store(conn, project, store)
            if body.file_ids:
                await fs.add_files(conn, project, store, body.file_ids, None,
                                   strategy_of(body.chunking_strategy))
            data = await objects.get_data(conn, vs, store["id"], project)
        fs.wake()
        return json_response(data or store)

    @api.get("/vector_stores")
    async def list_vector_stores(page: ListParams = Depends(list_params),
                                 project: str = Depends(project_id)) -> Response:
        async with fs.db.read() as conn:
            result = await objects.list_page(conn, vs, [vs.c.project_id == project],
                                             limit=page.limit, order=page.order,
                                             after=page.after, before=page.before)
        return json_response(result.to_json())

    @api.get("/vector_stores/{vector_store_id}")
    async def retrieve_vector_store(vector_store_id: str,
                                    project: str = Depends(project_id)) -> Response:
        async with fs.db.read() as conn:
            return _polled(await _store(conn, project, vector_store_id))

    @api.post("/vector_stores/{vector_store_id}")
    async def modify_vector_store(vector_store_id: str, body: VectorStoreModify,
                                  project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            store = await stores.lock_store(conn, vector_store_id, project)
            if store is None:
                raise not_found("vector store", vector_store_id)
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
            data = await stores.save_store(conn, store)
        return json_response(data)

    @api.delete("/vector_stores/{vector_store_id}")
    async def delete_vector_store(vector_store_id: str,
                                  project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            if await stores.lock_store(conn, vector_store_id, project) is None:
                raise not_found("vector store", vector_store_id)
            await stores.delete_store(conn, vector_store_id)
        fs.index.cache.forget(vector_store_id)
        return deleted(vector_store_id, "vector_store.deleted")

    @api.post("/vector_stores/{vector_store_id}/files")
    async def create_vector_store_file(vector_store_id: str, body: VectorStoreFileCreate,
                                       project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            store = await fs.usable_store(conn, project, vector_store_id)
            added = await fs.add_files(conn, project, store, [body.file_id], body.attributes,
                                       strategy_of(body.chunking_strategy))
        fs.wake()
        return json_response(added[0])

    async def _list_files(project: str, store_id: str, page: ListParams,
                          status: str | None, batch_id: str | None = None) -> Response:
        async with fs.db.read() as conn:
            if batch_id is not None:
                batch = await objects.get_object(conn, vsb, batch_id, project)
                if batch is None or batch["vector_store_id"] != store_id:
                    raise not_found("vector store file batch", batch_id)
            else:
                await _store(conn, project, store_id)
            where = [vsf.c.vector_store_id == store_id]
            if status is not None:
                where.append(vsf.c.status == status)
            if batch_id is not None:
                where.append(vsf.c.batch_id == batch_id)
            result = await objects.list_page(conn, vsf, where, limit=page.limit,
                                             order=page.order, after=page.after,
                                             before=page.before)
        return json_response(result.to_json())

    @api.get("/vector_stores/{vector_store_id}/files")
    async def list_vector_store_files(
        vector_store_id: str, page: ListParams = Depends(list_params),
        status: Annotated[StatusFilter | None, Query(alias="filter")] = None,
        project: str = Depends(project_id),
    ) -> Response:
        return await _list_files(project, vector_store_id, page, status)

    @api.get("/vector_stores/{vector_store_id}/files/{file_id}")
    async def retrieve_vector_store_file(vector_store_id: str, file_id: str,
                                         project: str = Depends(project_id)) -> Response:
        async with fs.db.read() as conn:
            return _polled(await _file(conn, project, vector_store_id, file_id))

    @api.post("/vector_stores/{vector_store_id}/files/{file_id}")
    async def update_vector_store_file(vector_store_id: str, file_id: str,
                                       body: VectorStoreFileUpdate,
                                       project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            obj = await _file(conn, project, vector_store_id, file_id)
            obj["attributes"] = body.attributes or {}
            data = await stores.save_file(conn, obj)
        return json_response(data)

    @api.delete("/vector_stores/{vector_store_id}/files/{file_id}")
    async def delete_vector_store_file(vector_store_id: str, file_id: str,
                                       project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            store = await stores.lock_store(conn, vector_store_id, project)
            if store is None:
                raise not_found("vector store", vector_store_id)
            if not await stores.detach(conn, store, file_id):
                raise not_found("vector store file", file_id)
        return deleted(file_id, "vector_store.file.deleted")

    @api.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
    async def vector_store_file_content(vector_store_id: str, file_id: str,
                                        project: str = Depends(project_id)) -> Response:
        c = tables.vector_store_chunks
        async with fs.db.read() as conn:
            await _file(conn, project, vector_store_id, file_id)
            rows = (await conn.execute(select(c.c.start_char, c.c.text).where(
                c.c.vector_store_id == vector_store_id, c.c.file_id == file_id)
                .order_by(c.c.position))).all()
        # Chunks overlap: each adds the text past where the previous one ended.
        text, end = "", 0
        for row in rows:
            text += row.text[max(0, end - row.start_char):]
            end = max(end, row.start_char + len(row.text))
        data = [{"type": "text", "text": text}] if rows else []
        return json_response({"object": "vector_store.file_content.page", "data": data,
                              "has_more": False, "next_page": None})

    @api.post("/vector_stores/{vector_store_id}/file_batches")
    async def create_file_batch(vector_store_id: str, body: FileBatchCreate,
                                project: str = Depends(project_id)) -> Response:
        if body.files is not None:
            _check_batch_size(fs, len(body.files), "files")
        else:
            _check_batch_size(fs, len(body.file_ids or []), "file_ids")
        strategy = strategy_of(body.chunking_strategy)
        per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] = {}
        if body.files is not None:
            for item in body.files:
                per_file[item.file_id] = (item.attributes, strategy_of(item.chunking_strategy))
        file_ids = list(per_file) if body.files is not None else list(body.file_ids or [])
        batch = stores.new_batch(vector_store_id)
        async with fs.db.write() as conn:
            store = await fs.usable_store(conn, project, vector_store_id)
            await objects.insert_object(conn, vsb, batch, project,
                                        vector_store_id=vector_store_id)
            await fs.add_files(conn, project, store, file_ids, body.attributes, strategy,
                               batch["id"], per_file or None)
            await stores.recount_batch(conn, batch["id"])
            data = await objects.get_data(conn, vsb, batch["id"], project)
        fs.wake()
        return json_response(data or batch)

    async def _batch(conn: Connection, project: str, store_id: str, batch_id: str
                     ) -> dict[str, Any]:
        batch = await objects.get_object(conn, vsb, batch_id, project)
        if batch is None or batch["vector_store_id"] != store_id:
            raise not_found("vector store file batch", batch_id)
        return batch

    @api.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
    async def retrieve_file_batch(vector_store_id: str, batch_id: str,
                                  project: str = Depends(project_id)) -> Response:
        async with fs.db.read() as conn:
            return _polled(await _batch(conn, project, vector_store_id, batch_id))

    @api.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
    async def cancel_file_batch(vector_store_id: str, batch_id: str,
                                project: str = Depends(project_id)) -> Response:
        async with fs.db.write() as conn:
            batch = await _batch(conn, project, vector_store_id, batch_id)
            if batch["status"] != stores.IN_PROGRESS:
                raise bad_request(f"Cannot cancel a batch with status '{batch['status']}'.")
            data = await stores.cancel_batch(conn, batch)
        return json_response(data)

    @api.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
    async def list_file_batch_files(
        vector_store_id: str, batch_id: str, page: ListParams = Depends(list_params),
        status: Annotated[StatusFilter | None, Query(alias="filter")] = None,
        project: str = Depends(project_id),
    ) -> Response:
        return await _list_files(project, vector_store_id, page, status, batch_id)

    @api.post("/vector_stores/{vector_store_id}/search")
    async def search_vector_store(vector_store_id: str, body: SearchRequest,
                                  project: str = Depends(project_id)) -> Response:
        queries = body.queries()
        if body.rewrite_query:
            queries = [" ".join(lexical.terms(q)) or q for q in queries]
        async with fs.db.read() as conn:
            store = await _store(conn, project, vector_store_id)
            if stores.is_expired(store):
                raise bad_request(f"Vector store {vector_store_id} has expired and can no "
                                  "longer be used.")
            allowed = None
            if body.filters is not None:
                spec = body.filters.model_dump()
                rows = (await conn.execute(select(vsf.c.id, vsf.c.data).where(
                    vsf.c.vector_store_id == vector_store_id,
                    vsf.c.status == stores.COMPLETED))).all()
                allowed = {row.id for row in rows
                           if matches(spec, orjson.loads(row.data).get("attributes") or {})}
        await fs.mark_active(vector_store_id, store)
        threshold = body.ranking_options.score_threshold if body.ranking_options else 0.0
        hits = await fs.index.search([vector_store_id], queries, body.max_num_results,
                                     allowed, threshold)
        return json_response({
            "object": "vector_store.search_results.page", "search_query": queries,
            "data": [{"file_id": h.file_id, "filename": h.filename, "score": h.score,
                      "attributes": h.attributes or {},
                      "content": [{"type": "text", "text": h.text}]} for h in hits],
            "has_more": False, "next_page": None,
        })

    return api
