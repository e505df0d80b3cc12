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
    message_statement,
    new_message,
)
from vtai.server.api.references import message_file_ids, require_files, resource_file_ids
from vtai.server.api.responses import deleted, json_response
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.db import Connection, Sql

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
    data, statements = _thread_statements(body, project, resources)
    for statement, params in statements:
        await conn.sql(statement, params)
    messages = [orjson.loads(params["data"]) for _, params in statements[1:]]
    thread_id = statements[0][1]["id"]
    if await add_attachments_to_thread_store(conn, project, thread_id, messages):
        data = await objects.get_data(conn, tables.threads, thread_id, project) or data
    return data


def _refers_to_nothing(body: ThreadCreate) -> bool:
    """Whether a new thread names no file or vector store (none to check or create)."""
    return body.tool_resources is None and not any(
        message_file_ids(message) for message in body.messages)


def _thread_statements(body: ThreadCreate, project: str, tool_resources: dict[str, Any]
                       ) -> tuple[str, list[tuple[Sql, dict[str, Any]]]]:
    """A new thread's JSON, and the statements that store it and its first messages."""
    thread = shaped(Thread, {
        "id": ids.new_id("thread_"), "object": "thread", "created_at": ids.now(),
        "metadata": body.metadata or {}, "tool_resources": tool_resources,
    })
    data = objects.dumps(thread)
    statements = [objects.insert_statement(tables.threads, thread, project, data)]
    for message in (new_message(thread["id"], m) for m in body.messages):
        statements.append(message_statement(message, project))
    return data, statements


@router.post("/threads")
async def create_thread(
    request: Request, body: ThreadCreate | None = None, project: str = Depends(project_id)
) -> Response:
    body = body or ThreadCreate()
    check_thread_request(body, request.app.state.settings)
    if _refers_to_nothing(body):  # one durable write (one round trip on PostgreSQL)
        data, statements = _thread_statements(body, project, {})
        await request.app.state.db.write_together(statements, durable=True)
        thread_id, messages = statements[0][1]["id"], statements[1:]
        request.app.state.known_threads.thread_made(
            thread_id, project, [(0, params["id"], params["data"]) for _, params in messages])
        return json_response(data)
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
    request.app.state.known_threads.forget_thread(thread_id)
    async with request.app.state.db.write() as conn:
        count = await objects.delete_objects(conn, t, t.c.id == thread_id,
                                             t.c.project_id == project)
        if not count:
            raise not_found("thread", thread_id)
        for child in (tables.messages, tables.run_steps, tables.runs):
            await objects.delete_objects(conn, child, child.c.thread_id == thread_id)
    return deleted(thread_id, "thread.deleted")
