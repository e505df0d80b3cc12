"""/v1/threads"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from openai.types.beta import Thread
from pydantic import Field
from starlette.responses import Response

from vtai.server import ids
from vtai.server.api.auth import project_id
from vtai.server.api.common import Metadata, Strict, ToolResources, dump_tool_resources
from vtai.server.api.errors import not_found
from vtai.server.api.limits import check_message_size
from vtai.server.api.messages import (
    MessageCreate,
    add_attachments_to_thread_store,
    new_message,
)
from vtai.server.api.references import message_file_ids, require_files, resource_file_ids
from vtai.server.api.responses import deleted, json_response
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables, writes
from vtai.server.store.sql import Connection

router = APIRouter(tags=["threads"])


class ThreadCreate(Strict):
    messages: list[MessageCreate] = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


class ThreadModify(Strict):
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


def check_thread_request(body: ThreadCreate, settings: Settings) -> None:
    for index, message in enumerate(body.messages):
        check_message_size(message.content, message.attachments, settings,
                           f"messages[{index}].content")


async def insert_thread(conn: Connection, body: ThreadCreate, project: str) -> str:
    """Create a thread with its first messages; returns the thread's JSON. Files they refer
    to must exist in the project."""
    await require_files(conn, project, resource_file_ids(body.tool_resources) + [
        file_id for message in body.messages for file_id in message_file_ids(message)])
    resources = await dump_tool_resources(body.tool_resources, conn, project)
    thread, messages = _new_thread(body, project, resources)
    await conn.sql(writes.INSERT_THREAD, thread)
    for message in messages:
        await conn.sql(writes.INSERT_MESSAGE, message.params())
    stored = [orjson.loads(message.data) for message in messages]
    if await add_attachments_to_thread_store(conn, project, thread["id"], stored):
        return await objects.get_data(conn, tables.threads, thread["id"], project) or \
            thread["data"]
    return str(thread["data"])


def _refers_to_nothing(body: ThreadCreate) -> bool:
    """Whether a new thread names no file or vector store (none to check or create)."""
    return body.tool_resources is None and not any(
        message_file_ids(message) for message in body.messages)


def _new_thread(body: ThreadCreate, project: str, tool_resources: dict[str, Any]
                ) -> tuple[dict[str, Any], list[writes.RunRow]]:
    """A new thread's row (its JSON as ``data``), and its first messages' rows."""
    thread = shaped(Thread, {
        "id": ids.new_id("thread_"), "object": "thread", "created_at": ids.now(),
        "metadata": body.metadata or {}, "tool_resources": tool_resources,
    })
    row = {"id": thread["id"], "project_id": project, "created_at": thread["created_at"],
           "data": objects.dumps(thread)}
    messages = [new_message(thread["id"], m) for m in body.messages]
    return row, [writes.RunRow(m["id"], project, m["created_at"], objects.dumps(m),
                               m["thread_id"], None) for m in messages]


@router.post("/threads")
async def create_thread(
    request: Request, body: ThreadCreate | None = None, project: str = Depends(project_id)
) -> Response:
    body = body or ThreadCreate()
    check_thread_request(body, request.app.state.settings)
    if _refers_to_nothing(body):  # one durable write (one round trip on PostgreSQL)
        thread, messages = _new_thread(body, project, {})
        await writes.insert_thread(request.app.state.db, thread, messages)
        return json_response(thread["data"])
    async with request.app.state.db.write() as conn:
        data = await insert_thread(conn, body, project)
    return json_response(data)


@router.get("/threads/{thread_id}")
async def retrieve_thread(
    thread_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    async with request.app.state.db.read() as conn:
        data = await objects.get_data(conn, tables.threads, thread_id, project)
    if data is None:
        raise not_found("thread", thread_id)
    return json_response(data)


@router.post("/threads/{thread_id}")
async def modify_thread(
    thread_id: str, body: ThreadModify, request: Request, project: str = Depends(project_id)
) -> Response:
    async with request.app.state.db.write() as conn:
        obj = await objects.get_object(conn, tables.threads, thread_id, project)
        if obj is None:
            raise not_found("thread", thread_id)
        changes: dict[str, Any] = {}
        if "metadata" in body.model_fields_set:
            changes["metadata"] = body.metadata or {}
        if "tool_resources" in body.model_fields_set:
            await require_files(conn, project, resource_file_ids(body.tool_resources))
            changes["tool_resources"] = await dump_tool_resources(body.tool_resources, conn,
                                                                  project)
        data = await objects.save_object(conn, tables.threads, shaped(Thread, {**obj, **changes}))
    return json_response(data)


@router.delete("/threads/{thread_id}")
async def delete_thread(
    thread_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    t = tables.threads
    async with request.app.state.db.write() as conn:
        count = await objects.delete_objects(conn, t, t.c.id == thread_id,
                                             t.c.project_id == project)
        if not count:
            raise not_found("thread", thread_id)
        for child in (tables.messages, tables.run_steps, tables.runs):
            await objects.delete_objects(conn, child, child.c.thread_id == thread_id)
    return deleted(thread_id, "thread.deleted")
