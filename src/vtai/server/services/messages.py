"""/v1/threads/{thread_id}/messages, and storing a new message wherever it comes from (a thread's
first messages, a run's additional messages)."""

from __future__ import annotations

from typing import Any

from openai.types.beta.threads import Message

from vtai.server import ids
from vtai.server.errors import bad_request, not_found
from vtai.server.protocol.lists import ListParams
from vtai.server.protocol.messages import (
    MessageCreate,
    MessageModify,
    content_parts,
    message_file_ids,
)
from vtai.server.retrieval.threads import add_to_thread_store
from vtai.server.services.checks import check_message_size
from vtai.server.services.references import require_files
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import objects, queries, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.objects import Page
from vtai.server.store.sql import Connection
from vtai.server.tools.base import attached_files


def new_message(thread_id: str, body: MessageCreate, *, run_id: str | None = None,
                assistant_id: str | None = None) -> dict[str, Any]:
    """A message object from a request."""
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


def message_row(obj: dict[str, Any], project: str) -> writes.RunRow:
    return writes.RunRow(obj["id"], project, obj["created_at"], objects.dumps(obj),
                         obj["thread_id"], obj["run_id"])


async def insert_message(conn: Connection, obj: dict[str, Any], project: str) -> str:
    """Store a new message; files attached to it for file_search go into the thread's vector
    store at once."""
    row = message_row(obj, project)
    await conn.sql(writes.INSERT_MESSAGE, row.params())
    await add_attachments_to_thread_store(conn, project, obj["thread_id"], [obj])
    return row.data


async def add_attachments_to_thread_store(conn: Connection, project: str, thread_id: str,
                                          messages: list[dict[str, Any]]) -> bool:
    """Files attached to ``messages`` for file_search, into the thread's vector store:
    whether there were any (the thread's tool_resources may have changed)."""
    file_ids = attached_files(messages, "file_search")
    if file_ids:
        await add_to_thread_store(conn, project, thread_id, file_ids)
    return bool(file_ids)


async def require_thread(conn: Connection, thread_id: str, project: str) -> None:
    if not await queries.thread_exists(conn, thread_id, project):
        raise not_found("thread", thread_id)


class Messages:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(self, project: str, thread_id: str, body: MessageCreate) -> str:
        check_message_size(body.content, body.attachments, self.settings)
        obj = new_message(thread_id, body)
        # After any run being started on the thread: then its active run is seen.
        async with self.db.write(turn=writes.thread_turn(thread_id)) as conn:
            exists, run_id = await queries.thread_activity(conn, thread_id, project)
            if not exists:
                raise not_found("thread", thread_id)
            await require_files(conn, project, message_file_ids(body))
            if run_id is not None:
                raise bad_request(
                    f"Can't add messages to {thread_id} while a run {run_id} is active.")
            return await insert_message(conn, obj, project)

    async def list(self, project: str, thread_id: str, page: ListParams,
                   run_id: str | None = None) -> Page:
        m = tables.messages
        where = [m.c.thread_id == thread_id, m.c.project_id == project]
        if run_id is not None:
            where.append(m.c.run_id == run_id)
        async with self.db.read() as conn:
            result = await objects.list_page(conn, m, where, limit=page.limit,
                                             order=page.order, after=page.after,
                                             before=page.before)
            if not result.rows:
                await require_thread(conn, thread_id, project)
        return result

    async def retrieve(self, project: str, thread_id: str, message_id: str) -> str:
        m = tables.messages
        async with self.db.read() as conn:
            data = await objects.get_data(conn, m, message_id, project,
                                          m.c.thread_id == thread_id)
            if data is None:
                await require_thread(conn, thread_id, project)
        if data is None:
            raise not_found("message", message_id)
        return data

    async def modify(self, project: str, thread_id: str, message_id: str,
                     body: MessageModify) -> str:
        m = tables.messages
        async with self.db.write() as conn:
            obj = await objects.get_object(conn, m, message_id, project,
                                           m.c.thread_id == thread_id)
            if obj is None:
                await require_thread(conn, thread_id, project)
                raise not_found("message", message_id)
            if "metadata" in body.model_fields_set:
                obj["metadata"] = body.metadata or {}
            return await objects.save_object(conn, m, obj)

    async def delete(self, project: str, thread_id: str, message_id: str) -> None:
        m = tables.messages
        async with self.db.write() as conn:
            count = await objects.delete_objects(
                conn, m, m.c.id == message_id, m.c.thread_id == thread_id,
                m.c.project_id == project)
            if not count:
                await require_thread(conn, thread_id, project)
                raise not_found("message", message_id)
