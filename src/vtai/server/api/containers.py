"""/v1/containers and their files (a container is a code interpreter session: see
services/containers.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.errors import bad_request
from vtai.server.api.json import json_response
from vtai.server.protocol.containers import ContainerCreate, ContainerFileFromFile
from vtai.server.protocol.lists import ListParams

router = APIRouter(tags=["containers"])


@router.post("/containers")
async def create_container(body: ContainerCreate, svc: Svc, project: Project) -> Response:
    return json_response(await svc.containers.create(project, body))


@router.get("/containers")
async def list_containers(svc: Svc, project: Project, page: Page,
                          name: str | None = Query(None, max_length=256)) -> Response:
    return json_response(await svc.containers.list(project, page, name))


@router.get("/containers/{container_id}")
async def retrieve_container(container_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.containers.retrieve(project, container_id))


@router.delete("/containers/{container_id}")
async def delete_container(container_id: str, svc: Svc, project: Project) -> Response:
    await svc.containers.delete(project, container_id)
    return json_response({"id": container_id, "object": "container.deleted", "deleted": True})


@router.post("/containers/{container_id}/files")
async def create_container_file(container_id: str, request: Request, svc: Svc,
                                project: Project) -> Response:
    """A multipart upload (``file``), or JSON naming a file (``file_id``)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise bad_request("Expected a file, with its filename, in the field 'file'.",
                              "file")
        return json_response(await svc.containers.add_file(
            project, container_id, upload=(upload.filename, upload.file)))
    try:
        body = ContainerFileFromFile.model_validate_json(await request.body())
    except ValidationError as err:
        raise bad_request(f"Expected a multipart upload or {{\"file_id\": ...}}: "
                          f"{err.errors()[0]['msg']}", "file_id") from err
    return json_response(await svc.containers.add_file(project, container_id,
                                                       file_id=body.file_id))


@router.get("/containers/{container_id}/files")
async def list_container_files(container_id: str, svc: Svc, project: Project,
                               limit: int = Query(20, ge=1, le=100),
                               order: Literal["asc", "desc"] = Query("desc"),
                               after: str | None = Query(None, max_length=64)) -> Response:
    page = ListParams(limit=limit, order=order, after=after)
    return json_response((await svc.containers.list_files(project, container_id,
                                                          page)).to_json())


@router.get("/containers/{container_id}/files/{file_id}")
async def retrieve_container_file(container_id: str, file_id: str, svc: Svc,
                                  project: Project) -> Response:
    return json_response(await svc.containers.file(project, container_id, file_id))


@router.delete("/containers/{container_id}/files/{file_id}")
async def delete_container_file(container_id: str, file_id: str, svc: Svc,
                                project: Project) -> Response:
    await svc.containers.delete_file(project, container_id, file_id)
    return json_response({"id": file_id, "object": "container.file.deleted", "deleted": True})


@router.get("/containers/{container_id}/files/{file_id}/content")
async def container_file_content(container_id: str, file_id: str, svc: Svc,
                                 project: Project) -> Response:
    content = await svc.containers.content(project, container_id, file_id)
    return StreamingResponse(content.chunks, media_type=content.media_type,
                             headers={"content-length": str(content.size)})
