"""/v1/files: upload, list, retrieve, delete, content."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from starlette.responses import Response, StreamingResponse

from vtai.server.api.deps import Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.protocol.lists import ListParams

router = APIRouter(tags=["files"])

# "evals" is left out: the file object's purpose cannot hold it in OpenAI's contract.
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data"]


@router.post("/files")
async def upload_file(
    svc: Svc, project: Project,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[UploadPurpose, Form()],
    expires_after_anchor: Annotated[Literal["created_at"] | None,
                                    Form(alias="expires_after[anchor]")] = None,
    expires_after_seconds: Annotated[int | None, Form(alias="expires_after[seconds]", ge=3600,
                                                      le=2_592_000)] = None,
) -> Response:
    return json_response(await svc.files.upload(project, file.filename, purpose, file.file,
                                                file.size, expires_after_seconds))


@router.get("/files")
async def list_files(
    svc: Svc, project: Project,
    purpose: str | None = Query(None, max_length=64),
    limit: int = Query(10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, max_length=64),
) -> Response:
    page = ListParams(limit=limit, order=order, after=after)
    return json_response((await svc.files.list(project, purpose, page)).to_json())


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.files.retrieve(project, file_id))


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, svc: Svc, project: Project) -> Response:
    await svc.files.delete(project, file_id)
    return deleted(file_id, "file")


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, svc: Svc, project: Project) -> Response:
    content = await svc.files.content(project, file_id)
    # Streamed as it is read (a chunk at a time, from disk or from PostgreSQL).
    return StreamingResponse(content.chunks, media_type=content.media_type,
                             headers={"content-length": str(content.size)})
