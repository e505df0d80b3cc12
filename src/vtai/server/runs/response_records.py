"""Responses in the database: the response object and its items, each change of status by
compare-and-set (a cancel racing with the worker is noticed), and their conversation's
history, which a response reads and adds to."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update

from vtai.server import ids
from vtai.server.runs import items as item_shapes
from vtai.server.runs.events import Event, EventBus
from vtai.server.store import items, objects, tables
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection

QUEUED, IN_PROGRESS = "queued", "in_progress"
COMPLETED, INCOMPLETE, FAILED, CANCELLED = "completed", "incomplete", "failed", "cancelled"
ACTIVE = (QUEUED, IN_PROGRESS)
TERMINAL_EVENTS = {COMPLETED: "response.completed", INCOMPLETE: "response.incomplete",
                   FAILED: "response.failed"}


@dataclass
class Stored:
    """A response as a worker reads it."""

    data: dict[str, Any]
    project: str
    status: str
    conversation_id: str | None
    stored: bool
    attempt: int


def conversation_object(thread: dict[str, Any]) -> dict[str, Any]:
    """A thread as the Conversations API shows it."""
    return {"id": thread["id"], "object": "conversation", "created_at": thread["created_at"],
            "metadata": thread.get("metadata") or {}}


async def append_to_conversation(conn: Connection, project: str, conversation_id: str,
                                 new: list[dict[str, Any]], given: Collection[str] = ()
                                 ) -> list[dict[str, Any]]:
    """Add items to a conversation: the messages a thread holds as thread messages, the rest
    as items. An item whose id the client ``given`` (an earlier output item given back) is
    left out if the conversation holds it already, and gets a new id otherwise (ids order a
    conversation); others keep theirs (made now). Returns the items as added."""
    held = set(await items.ids_in_conversation(conn, conversation_id, list(given))) \
        if given else set()
    added: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for item in new:
        if item["id"] in held:
            continue
        if item["id"] in given:
            item = {**item, "id": item_shapes.new_item_id(item.get("type", "message"))}
        message = item_shapes.thread_message(item, conversation_id)
        if message is None:
            others.append(item)
        else:
            await objects.insert_object(conn, tables.messages, message, project,
                                        thread_id=conversation_id, run_id=None)
        added.append(item)
    await items.insert_items(conn, project, conversation_id, items.CONVERSATION, others)
    return added


async def conversation_items(conn: Connection, conversation_id: str) -> list[dict[str, Any]]:
    """A conversation's items, oldest first."""
    return [item if item is not None else item_shapes.message_item(message or {})
            for _, message, item in await items.conversation_rows(conn, conversation_id)]


class ResponseRecords:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus

    async def load(self, response_id: str) -> Stored | None:
        r = tables.responses
        async with self.db.read() as conn:
            row = (await conn.execute(select(
                r.c.data, r.c.project_id, r.c.status, r.c.conversation_id, r.c.stored,
                r.c.attempt).where(r.c.id == response_id))).first()
        if row is None:
            return None
        return Stored(orjson.loads(row.data), row.project_id, row.status, row.conversation_id,
                      bool(row.stored), row.attempt)

    async def history(self, response: Stored) -> list[dict[str, Any]]:
        """What the response's model calls are given, before their own output: the
        conversation's items (its input was added to them), or the input and output of the
        previous responses and its own input."""
        async with self.db.read() as conn:
            if response.conversation_id is not None:
                return await conversation_items(conn, response.conversation_id)
            return await items.chain_items(conn, response.data["id"])

    async def last_sequence_number(self, response_id: str) -> int:
        """The sequence number of the last event the response streamed (-1: none)."""
        history = await self.bus.history(response_id, None)
        if not history:
            return -1
        return int(orjson.loads(history[-1].data).get("sequence_number", -1))

    async def move(self, response: Stored, to: str, *, conn: Connection | None = None,
                   release: bool = False) -> bool:
        """Store ``response.data`` with status ``to`` if its status is still the one read
        (compare-and-set); ``release``: the worker's lease goes too."""
        r = tables.responses
        response.data["status"] = to
        values: dict[str, Any] = {"status": to, "data": objects.dumps(response.data)}
        if release:
            values.update(worker_id=None, lease_expires_at=None)
        statement = update(r).where(r.c.id == response.data["id"],
                                    r.c.status == response.status).values(**values)
        if conn is None:
            async with self.db.write() as own:
                moved = (await own.execute(statement)).rowcount == 1
        else:
            moved = (await conn.execute(statement)).rowcount == 1
        if moved:
            response.status = to
        return moved

    async def finish(self, response: Stored, to: str, output: list[dict[str, Any]]) -> bool:
        """The response's end, in one transaction: its status and object, its output items
        (for the responses that follow it) and, with a conversation, the output added to
        it. A response not to be stored is removed instead. False if its status changed
        meanwhile (a cancel)."""
        response.data["output"] = output
        async with self.db.write() as conn:
            if not await self.move(response, to, conn=conn, release=True):
                return False
            response_id = response.data["id"]
            if not response.stored:
                r = tables.responses
                await objects.delete_objects(conn, r, r.c.id == response_id)
                await items.delete_owned(conn, response_id)
                return True
            await items.insert_items(conn, response.project, response_id, items.OUTPUT,
                                     output)
            if response.conversation_id is not None:
                await append_to_conversation(conn, response.project,
                                             response.conversation_id, output)
        return True

    def publish(self, response_id: str, event: str, payload: dict[str, Any]) -> None:
        self.bus.publish(response_id, Event(event, orjson.dumps(payload).decode(),
                                            ids.new_event_id()))
