"""/v1/threads: create (with first messages), retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from openai.types.beta import Thread

from vtai.server import ids
from vtai.server.errors import not_found
from vtai.server.protocol.messages import message_file_ids
from vtai.server.protocol.threads import ThreadCreate, ThreadModify
from vtai.server.services.checks import check_message_size
from vtai.server.services.messages import (
    add_attachments_to_thread_store,
    message_row,
    new_message,
)
from vtai.server.services.references import require_files
from vtai.server.services.resources import tool_resources
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import items, objects, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection


def check_thread_request(body: ThreadCreate, settings: Settings) -> None:
    for index, message in enumerate(body.messages):
        check_message_size(message.content, message.attachments, settings,
                           f"messages[{index}].content")


def _refers_to_nothing(body: ThreadCreate) -> bool:
    """Whether a new thread names no file or vector store (none to check or create)."""
    return body.tool_resources is None and not any(
        message_file_ids(message) for message in body.messages)


def _new_thread(body: ThreadCreate, project: str, resources: dict[str, Any]
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new thread's row (its JSON as ``data``), and its first messages."""
    thread = shaped(Thread, {
        "id": ids.new_id("thread_"), "object": "thread", "created_at": ids.now(),
        "metadata": body.metadata or {}, "tool_resources": resources,
    })
    row = {"id": thread["id"], "project_id": project, "created_at": thread["created_at"],
           "data": objects.dumps(thread)}
    return row, [new_message(thread["id"], m) for m in body.messages]


async def insert_thread(conn: Connection, body: ThreadCreate, project: str) -> str:
    """A thread with its first messages, in ``conn``'s transaction: its JSON. The files and
    vector stores they name must be the project's."""
    await require_files(conn, project, [file_id for message in body.messages
                                        for file_id in message_file_ids(message)])
    thread, messages = _new_thread(body, project,
                                   await tool_resources(body.tool_resources, conn, project))
    await conn.sql(writes.INSERT_THREAD, thread)
    for message in messages:
        await conn.sql(writes.INSERT_MESSAGE, message_row(message, project).params())
    if await add_attachments_to_thread_store(conn, project, thread["id"], messages):
        return await objects.get_data(conn, tables.threads, thread["id"], project) or \
            str(thread["data"])
    return str(thread["data"])


class Threads:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(self, project: str, body: ThreadCreate) -> str:
        check_thread_request(body, self.settings)
        if _refers_to_nothing(body):  # one durable write (one round trip on PostgreSQL)
            thread, messages = _new_thread(body, project, {})
            await writes.insert_thread(self.db, thread,
                                       [message_row(m, project) for m in messages])
            return str(thread["data"])
        async with self.db.write() as conn:
            return await insert_thread(conn, body, project)

    async def retrieve(self, project: str, thread_id: str) -> str:
        async with self.db.read() as conn:
            data = await objects.get_data(conn, tables.threads, thread_id, project)
        if data is None:
            raise not_found("thread", thread_id)
        return data

    async def modify(self, project: str, thread_id: str, body: ThreadModify) -> str:
        async with self.db.write() as conn:
            obj = await objects.get_object(conn, tables.threads, thread_id, project)
            if obj is None:
                raise not_found("thread", thread_id)
            changes: dict[str, Any] = {}
            if "metadata" in body.model_fields_set:
                changes["metadata"] = body.metadata or {}
            if "tool_resources" in body.model_fields_set:
                changes["tool_resources"] = await tool_resources(body.tool_resources, conn,
                                                                 project)
            return await objects.save_object(conn, tables.threads,
                                             shaped(Thread, {**obj, **changes}))

    async def delete(self, project: str, thread_id: str) -> None:
        t = tables.threads
        async with self.db.write() as conn:
            count = await objects.delete_objects(conn, t, t.c.id == thread_id,
                                                 t.c.project_id == project)
            if not count:
                raise not_found("thread", thread_id)
            for child in (tables.messages, tables.run_steps, tables.runs):
                await objects.delete_objects(conn, child, child.c.thread_id == thread_id)
            await items.delete_owned(conn, thread_id)  # (a conversation's other items)
