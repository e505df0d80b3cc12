"""/v1/vector_stores: stores, their files, file batches and search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.protocol.vector_stores import (
    FileBatchCreate,
    SearchRequest,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreModify,
)

router = APIRouter(tags=["vector_stores"])

POLL_AFTER_MS = "200"  # the SDK's poll helpers wait this long between retrieves
StatusFilter = Annotated[Literal["in_progress", "completed", "failed", "cancelled"] | None,
                         Query(alias="filter")]


def _polled(data: str | bytes | dict[str, Any]) -> Response:
    response = json_response(data)
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


@router.post("/vector_stores")
async def create_vector_store(body: VectorStoreCreate, svc: Svc, project: Project) -> Response:
    return json_response(await svc.vector_stores.create(project, body))


@router.get("/vector_stores")
async def list_vector_stores(svc: Svc, project: Project, page: Page) -> Response:
    return json_response((await svc.vector_stores.list(project, page)).to_json())


@router.get("/vector_stores/{vector_store_id}")
async def retrieve_vector_store(vector_store_id: str, svc: Svc, project: Project) -> Response:
    return _polled(await svc.vector_stores.retrieve(project, vector_store_id))


@router.post("/vector_stores/{vector_store_id}")
async def modify_vector_store(vector_store_id: str, body: VectorStoreModify, svc: Svc,
                              project: Project) -> Response:
    return json_response(await svc.vector_stores.modify(project, vector_store_id, body))


@router.delete("/vector_stores/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, svc: Svc, project: Project) -> Response:
    await svc.vector_stores.delete(project, vector_store_id)
    return deleted(vector_store_id, "vector_store.deleted")


@router.post("/vector_stores/{vector_store_id}/files")
async def create_vector_store_file(vector_store_id: str, body: VectorStoreFileCreate,
                                   svc: Svc, project: Project) -> Response:
    return json_response(await svc.vector_stores.add_file(project, vector_store_id, body))


@router.get("/vector_stores/{vector_store_id}/files")
async def list_vector_store_files(vector_store_id: str, svc: Svc, project: Project,
                                  page: Page, status: StatusFilter = None) -> Response:
    files = await svc.vector_stores.list_files(project, vector_store_id, page, status)
    return json_response(files.to_json())


@router.get("/vector_stores/{vector_store_id}/files/{file_id}")
async def retrieve_vector_store_file(vector_store_id: str, file_id: str, svc: Svc,
                                     project: Project) -> Response:
    return _polled(await svc.vector_stores.retrieve_file(project, vector_store_id, file_id))


@router.post("/vector_stores/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(vector_store_id: str, file_id: str,
                                   body: VectorStoreFileUpdate, svc: Svc,
                                   project: Project) -> Response:
    return json_response(await svc.vector_stores.update_file(project, vector_store_id,
                                                             file_id, body))


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(vector_store_id: str, file_id: str, svc: Svc,
                                   project: Project) -> Response:
    await svc.vector_stores.delete_file(project, vector_store_id, file_id)
    return deleted(file_id, "vector_store.file.deleted")


@router.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
async def vector_store_file_content(vector_store_id: str, file_id: str, svc: Svc,
                                    project: Project) -> Response:
    return json_response(await svc.vector_stores.file_content(project, vector_store_id,
                                                              file_id))


@router.post("/vector_stores/{vector_store_id}/file_batches")
async def create_file_batch(vector_store_id: str, body: FileBatchCreate, svc: Svc,
                            project: Project) -> Response:
    return json_response(await svc.vector_stores.create_batch(project, vector_store_id, body))


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
async def retrieve_file_batch(vector_store_id: str, batch_id: str, svc: Svc,
                              project: Project) -> Response:
    return _polled(await svc.vector_stores.retrieve_batch(project, vector_store_id, batch_id))


@router.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vector_store_id: str, batch_id: str, svc: Svc,
                            project: Project) -> Response:
    return json_response(await svc.vector_stores.cancel_batch(project, vector_store_id,
                                                              batch_id))


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(vector_store_id: str, batch_id: str, svc: Svc,
                                project: Project, page: Page,
                                status: StatusFilter = None) -> Response:
    files = await svc.vector_stores.list_files(project, vector_store_id, page, status,
                                               batch_id)
    return json_response(files.to_json())


@router.post("/vector_stores/{vector_store_id}/search")
async def search_vector_store(vector_store_id: str, body: SearchRequest, svc: Svc,
                              project: Project) -> Response:
    return json_response(await svc.vector_stores.search(project, vector_store_id, body))
