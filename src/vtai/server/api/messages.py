"""/v1/threads/{thread_id}/messages"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from openai.types.beta.threads import Message
from pydantic import Field, field_validator
from starlette.responses import Response

from vtai.server import ids
from vtai.server.api.auth import project_id
from vtai.server.api.common import Metadata, Strict
from vtai.server.api.errors import bad_request, not_found
from vtai.server.api.limits import check_message_size
from vtai.server.api.pagination import ListParams, list_params
from vtai.server.api.references import message_file_ids, require_files
from vtai.server.api.responses import deleted, json_response
from vtai.server.shapes import shaped
from vtai.server.store import objects, queries, tables, writes
from vtai.server.store.sql import Connection

router = APIRouter(tags=["messages"])


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageFile(Strict):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(Strict):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImageFilePart | ImageURLPart, Field(discriminator="type")]


class AttachmentTool(Strict):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Strict):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(Strict):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata = None

    @field_validator("content")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value:
            raise ValueError("Message content must be non-empty.")
        return value


class MessageModify(Strict):
    metadata: Metadata = None


def content_parts(content: str | list[Any]) -> list[dict[str, Any]]:
    """Request content (a string or parts) in the message object's form."""
    if isinstance(content, str):
        return [{"type": "text", "text": {"value": content, "annotations": []}}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": {"value": part.text, "annotations": []}})
        else:
            parts.append(part.model_dump(mode="json", exclude_none=True))
    return parts


def new_message(
    thread_id: str,
    body: MessageCreate,
    *,
    run_id: str | None = None,
    assistant_id: str | None = None,
) -> dict[str, Any]:
    created = ids.now()
    attachments = [a.model_dump(mode="json") for a in body.attachments or []]
    return shaped(Message, {
        "id": ids.new_id("msg_"), "object": "thread.message", "created_at": created,
        "assistant_id": assistant_id, "thread_id": thread_id, "run_id": run_id,
        "role": body.role, "content": content_parts(body.content),
        "attachments": attachments, "metadata": body.metadata or {},
        "status": "completed", "incomplete_details": None, "completed_at": created,
        "incomplete_at": None,
    })


async def insert_message(conn: Connection, obj: dict[str, Any], project: str) -> str:
    """Store a new message; files attached to it for file_search go into the thread's vector
    store at once."""
    data = objects.dumps(obj)
    await conn.sql(writes.INSERT_MESSAGE, writes.RunRow(
        obj["id"], project, obj["created_at"], data, obj["thread_id"], obj["run_id"]).params())
    await add_attachments_to_thread_store(conn, project, obj["thread_id"], [obj])
    return data


async def add_attachments_to_thread_store(conn: Connection, project: str, thread_id: str,
                                          messages: list[dict[str, Any]]) -> bool:
    """Files attached to ``messages`` for file_search, into the thread's vector store:
    whether there were any (the thread's tool_resources may have changed)."""
    # Imported here: the tool package builds on this module.
    from vtai.server.tools.base import attached_files
    from vtai.server.tools.file_search.threads import add_to_thread_store

    file_ids = attached_files(messages, "file_search")
    if file_ids:
        await add_to_thread_store(conn, project, thread_id, file_ids)
    return bool(file_ids)


async def _require_thread(conn: Connection, thread_id: str, project: str) -> None:
    if not await queries.thread_exists(conn, thread_id, project):
        raise not_found("thread", thread_id)


@router.post("/threads/{thread_id}/messages")
async def create_message(
    thread_id: str, body: MessageCreate, request: Request, project: str = Depends(project_id)
) -> Response:
    check_message_size(body.content, body.attachments, request.app.state.settings)
    obj = new_message(thread_id, body)
    # After any run being started on the thread: then its active run is seen.
    async with request.app.state.db.write(turn=writes.thread_turn(thread_id)) as conn:
        exists, run_id = await queries.thread_activity(conn, thread_id, project)
        if not exists:
            raise not_found("thread", thread_id)
        await require_files(conn, project, message_file_ids(body))
        if run_id is not None:
            raise bad_request(
                f"Can't add messages to {thread_id} while a run {run_id} is active.")
        data = await insert_message(conn, obj, project)
    return json_response(data)


@router.get("/threads/{thread_id}/messages")
async def list_messages(
    thread_id: str, request: Request, page: ListParams = Depends(list_params),
    run_id: str | None = Query(None, max_length=64), project: str = Depends(project_id),
) -> Response:
    m = tables.messages
    where = [m.c.thread_id == thread_id, m.c.project_id == project]
    if run_id is not None:
        where.append(m.c.run_id == run_id)
    async with request.app.state.db.read() as conn:
        result = await objects.list_page(
            conn, m, where, limit=page.limit, order=page.order, after=page.after,
            before=page.before,
        )
        if not result.rows:
            await _require_thread(conn, thread_id, project)
    return json_response(result.to_json())


@router.get("/threads/{thread_id}/messages/{message_id}")
async def retrieve_message(
    thread_id: str, message_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    m = tables.messages
    async with request.app.state.db.read() as conn:
        data = await objects.get_data(conn, m, message_id, project, m.c.thread_id == thread_id)
        if data is None:
            await _require_thread(conn, thread_id, project)
    if data is None:
        raise not_found("message", message_id)
    return json_response(data)


@router.post("/threads/{thread_id}/messages/{message_id}")
async def modify_message(
    thread_id: str, message_id: str, body: MessageModify, request: Request,
    project: str = Depends(project_id),
) -> Response:
    m = tables.messages
    async with request.app.state.db.write() as conn:
        obj = await objects.get_object(conn, m, message_id, project, m.c.thread_id == thread_id)
        if obj is None:
            await _require_thread(conn, thread_id, project)
            raise not_found("message", message_id)
        if "metadata" in body.model_fields_set:
            obj["metadata"] = body.metadata or {}
        data = await objects.save_object(conn, m, obj)
    return json_response(data)


@router.delete("/threads/{thread_id}/messages/{message_id}")
async def delete_message(
    thread_id: str, message_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    m = tables.messages
    async with request.app.state.db.write() as conn:
        count = await objects.delete_objects(
            conn, m, m.c.id == message_id, m.c.thread_id == thread_id, m.c.project_id == project)
        if not count:
            await _require_thread(conn, thread_id, project)
            raise not_found("message", message_id)
    return deleted(message_id, "thread.message.deleted")
