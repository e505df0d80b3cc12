"""/v1/threads"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vtai.server.api.deps import Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.protocol.threads import ThreadCreate, ThreadModify

router = APIRouter(tags=["threads"])


@router.post("/threads")
async def create_thread(svc: Svc, project: Project,
                        body: ThreadCreate | None = None) -> Response:
    return json_response(await svc.threads.create(project, body or ThreadCreate()))


@router.get("/threads/{thread_id}")
async def retrieve_thread(thread_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.threads.retrieve(project, thread_id))


@router.post("/threads/{thread_id}")
async def modify_thread(thread_id: str, body: ThreadModify, svc: Svc,
                        project: Project) -> Response:
    return json_response(await svc.threads.modify(project, thread_id, body))


@router.delete("/threads/{thread_id}")
async def delete_thread(thread_id: str, svc: Svc, project: Project) -> Response:
    await svc.threads.delete(project, thread_id)
    return deleted(thread_id, "thread.deleted")
