"""/v1/threads/{thread_id}/messages"""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.protocol.messages import MessageCreate, MessageModify

router = APIRouter(tags=["messages"])


@router.post("/threads/{thread_id}/messages")
async def create_message(thread_id: str, body: MessageCreate, svc: Svc,
                         project: Project) -> Response:
    return json_response(await svc.messages.create(project, thread_id, body))


@router.get("/threads/{thread_id}/messages")
async def list_messages(thread_id: str, svc: Svc, project: Project, page: Page,
                        run_id: str | None = Query(None, max_length=64)) -> Response:
    return json_response((await svc.messages.list(project, thread_id, page, run_id)).to_json())


@router.get("/threads/{thread_id}/messages/{message_id}")
async def retrieve_message(thread_id: str, message_id: str, svc: Svc,
                           project: Project) -> Response:
    return json_response(await svc.messages.retrieve(project, thread_id, message_id))


@router.post("/threads/{thread_id}/messages/{message_id}")
async def modify_message(thread_id: str, message_id: str, body: MessageModify, svc: Svc,
                         project: Project) -> Response:
    return json_response(await svc.messages.modify(project, thread_id, message_id, body))


@router.delete("/threads/{thread_id}/messages/{message_id}")
async def delete_message(thread_id: str, message_id: str, svc: Svc,
                         project: Project) -> Response:
    await svc.messages.delete(project, thread_id, message_id)
    return deleted(message_id, "thread.message.deleted")
