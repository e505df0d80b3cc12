"""/v1/assistants"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.protocol.assistants import AssistantCreate, AssistantModify

router = APIRouter(tags=["assistants"])


@router.post("/assistants")
async def create_assistant(body: AssistantCreate, svc: Svc, project: Project) -> Response:
    return json_response(await svc.assistants.create(project, body))


@router.get("/assistants")
async def list_assistants(svc: Svc, project: Project, page: Page) -> Response:
    return json_response((await svc.assistants.list(project, page)).to_json())


@router.get("/assistants/{assistant_id}")
async def retrieve_assistant(assistant_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.assistants.retrieve(project, assistant_id))


@router.post("/assistants/{assistant_id}")
async def modify_assistant(assistant_id: str, body: AssistantModify, svc: Svc,
                           project: Project) -> Response:
    return json_response(await svc.assistants.modify(project, assistant_id, body))


@router.delete("/assistants/{assistant_id}")
async def delete_assistant(assistant_id: str, svc: Svc, project: Project) -> Response:
    await svc.assistants.delete(project, assistant_id)
    return deleted(assistant_id, "assistant.deleted")
