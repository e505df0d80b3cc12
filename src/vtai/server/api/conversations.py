"""/v1/conversations and their items (a conversation is a thread: see
services/conversations.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.json import json_response
from vtai.server.api.responses import IncludeBrackets, IncludePlain
from vtai.server.protocol.conversations import ConversationCreate, ConversationUpdate, ItemsCreate

router = APIRouter(tags=["conversations"])


@router.post("/conversations")
async def create_conversation(body: ConversationCreate, svc: Svc, project: Project
                              ) -> Response:
    return json_response(await svc.conversations.create(project, body))


@router.get("/conversations/{conversation_id}")
async def retrieve_conversation(conversation_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.conversations.retrieve(project, conversation_id))


@router.post("/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, body: ConversationUpdate, svc: Svc,
                              project: Project) -> Response:
    return json_response(await svc.conversations.update(project, conversation_id, body))


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.conversations.delete(project, conversation_id))


@router.post("/conversations/{conversation_id}/items")
async def create_items(conversation_id: str, body: ItemsCreate, svc: Svc, project: Project,
                       include_brackets: IncludeBrackets = None,
                       include_plain: IncludePlain = None) -> Response:
    return json_response(await svc.conversations.add_items(project, conversation_id, body))


@router.get("/conversations/{conversation_id}/items")
async def list_items(conversation_id: str, svc: Svc, project: Project, page: Page,
                     include_brackets: IncludeBrackets = None,
                     include_plain: IncludePlain = None) -> Response:
    return json_response(await svc.conversations.list_items(project, conversation_id, page))


@router.get("/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(conversation_id: str, item_id: str, svc: Svc, project: Project,
                        include_brackets: IncludeBrackets = None,
                        include_plain: IncludePlain = None) -> Response:
    return json_response(await svc.conversations.item(project, conversation_id, item_id))


@router.delete("/conversations/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, svc: Svc, project: Project
                      ) -> Response:
    return json_response(await svc.conversations.delete_item(project, conversation_id, item_id))
