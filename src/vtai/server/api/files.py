"""/v1/files: upload, list, retrieve, delete, content."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from openai.types import FileObject
from sqlalchemy import or_
from starlette.responses import FileResponse, Response

from vtai.server import ids
from vtai.server.api.auth import project_id
from vtai.server.api.errors import APIError, bad_request, not_found
from vtai.server.api.responses import deleted, json_response
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.blobs import BlobStore, TooLarge
from vtai.server.store.db import Connection, Database
from vtai.server.tools.file_search.stores import remove_file_everywhere

router = APIRouter(tags=["files"])

# "evals" is left out: the file object's purpose cannot hold it in OpenAI's contract.
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data"]
MAX_FILENAME_CHARS = 1024


def _check_filename(name: str | None) -> str:
    # Stored and returned as given, never used as a path on disk.
    if not name:
        raise bad_request("The uploaded file must have a filename.", "file")
    if "\x00" in name or len(name) > MAX_FILENAME_CHARS:
        raise bad_request(f"Invalid filename: it must be at most {MAX_FILENAME_CHARS} "
                          "characters, without NUL bytes.", "file")
    return name


def file_object(file_id: str, filename: str, size: int, purpose: str,
                expires_at: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": file_id, "object": "file", "bytes": size, "created_at": ids.now(),
        "filename": filename, "purpose": purpose, "status": "processed",
    }
    if expires_at is not None:  # absent, not null, when the file never expires
        obj["expires_at"] = expires_at
    return shaped(FileObject, obj)


async def store_file(db: Database, blobs: BlobStore, project: str, filename: str,
                     purpose: str, data: bytes) -> dict[str, Any]:
    """Create a file from bytes the server made (code interpreter output, for instance)."""
    file_id = ids.new_id("file-")
    size = await blobs.save_bytes(file_id, data)
    obj = file_object(file_id, filename, size, purpose)
    async with db.write() as conn:
        await objects.insert_object(conn, tables.files, obj, project, purpose=purpose)
    return obj


def _live(now: int) -> Any:
    f = tables.files
    return or_(f.c.expires_at.is_(None), f.c.expires_at > now)


async def get_file(conn: Connection, file_id: str, project: str) -> dict[str, Any]:
    """A file of this project that has not expired, or a 404."""
    obj = await objects.get_object(conn, tables.files, file_id, project, _live(ids.now()))
    if obj is None:
        raise not_found("file", file_id)
    return obj


@router.post("/files")
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[UploadPurpose, Form()],
    expires_after_anchor: Annotated[Literal["created_at"] | None,
                                    Form(alias="expires_after[anchor]")] = None,
    expires_after_seconds: Annotated[int | None, Form(alias="expires_after[seconds]", ge=3600,
                                                      le=2_592_000)] = None,
    project: str = Depends(project_id),
) -> Response:
    filename = _check_filename(file.filename)
    limit = request.app.state.settings.max_file_bytes
    if file.size is not None and file.size > limit:
        raise APIError(413, f"File is too large: the limit is {limit} bytes.", param="file")
    file_id = ids.new_id("file-")
    blobs: BlobStore = request.app.state.blobs
    try:
        size = await blobs.save(file_id, file.file, limit)
    except TooLarge as err:
        raise APIError(413, f"File is too large: the limit is {limit} bytes.",
                       param="file") from err
    created = ids.now()
    expires_at = created + expires_after_seconds if expires_after_seconds else None
    obj = file_object(file_id, filename, size, purpose, expires_at)
    try:
        async with request.app.state.db.write() as conn:
            data = await objects.insert_object(conn, tables.files, obj, project,
                                               purpose=purpose, expires_at=expires_at)
    except BaseException:
        await blobs.delete(file_id)
        raise
    return json_response(data)


@router.get("/files")
async def list_files(
    request: Request,
    purpose: str | None = Query(None, max_length=64),
    limit: int = Query(10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, max_length=64),
    project: str = Depends(project_id),
) -> Response:
    f = tables.files
    where = [f.c.project_id == project, _live(ids.now())]
    if purpose is not None:
        where.append(f.c.purpose == purpose)
    async with request.app.state.db.read() as conn:
        page = await objects.list_page(conn, f, where, limit=limit, order=order, after=after,
                                       before=None)
    return json_response(page.to_json())


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, request: Request,
                        project: str = Depends(project_id)) -> Response:
    async with request.app.state.db.read() as conn:
        return json_response(await get_file(conn, file_id, project))


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request,
                      project: str = Depends(project_id)) -> Response:
    f = tables.files
    async with request.app.state.db.write() as conn:
        count = await objects.delete_objects(conn, f, f.c.id == file_id,
                                             f.c.project_id == project)
        if not count:
            raise not_found("file", file_id)
        await remove_file_everywhere(conn, project, file_id)
    await request.app.state.blobs.delete(file_id)
    return deleted(file_id, "file")


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request,
                       project: str = Depends(project_id)) -> Response:
    async with request.app.state.db.read() as conn:
        obj = await get_file(conn, file_id, project)
    media_type = mimetypes.guess_type(obj["filename"])[0] or "application/octet-stream"
    return FileResponse(request.app.state.blobs.path(file_id), media_type=media_type)
