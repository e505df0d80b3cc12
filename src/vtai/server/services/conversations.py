"""/v1/conversations: a conversation is a thread. Its user and assistant messages are the
thread's messages, so a thread made by the Assistants API is a conversation too (and the
other way round): ``conversations.items.list(thread_id)`` lists its messages as items."""

from __future__ import annotations

from typing import Any

from vtai.server import ids
from vtai.server.errors import NotFound, bad_request, not_found
from vtai.server.protocol.conversations import ConversationCreate, ConversationUpdate, ItemsCreate
from vtai.server.protocol.lists import ListParams
from vtai.server.runs import items as item_shapes
from vtai.server.runs.response_records import (
    append_to_conversation,
    conversation_items,
    conversation_object,
)
from vtai.server.services.responses import page_of
from vtai.server.services.threads import Threads
from vtai.server.store import items, objects, queries, tables, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection


def _given_ids(body_items: list[Any]) -> list[str]:
    return [item.id for item in body_items if getattr(item, "id", None)]


def _whole(body_items: list[Any]) -> list[dict[str, Any]]:
    return [item_shapes.whole_item(item.model_dump(by_alias=True, exclude_none=True))
            for item in body_items]


class Conversations:
    def __init__(self, db: Database, threads: Threads) -> None:
        self.db = db
        self.threads = threads

    async def create(self, project: str, body: ConversationCreate) -> dict[str, Any]:
        new = _whole(body.items or [])
        _refuse_references(new)
        conversation_id = ids.new_id("conv_")
        thread: dict[str, Any] = {"id": conversation_id, "object": "thread",
                                  "created_at": ids.now(), "metadata": body.metadata or {},
                                  "tool_resources": {}}
        async with self.db.write() as conn:
            await conn.sql(writes.INSERT_THREAD, {
                "id": conversation_id, "project_id": project,
                "created_at": thread["created_at"], "data": objects.dumps(thread)})
            await append_to_conversation(conn, project, conversation_id, new,
                                         _given_ids(body.items or []))
        return conversation_object(thread)

    async def retrieve(self, project: str, conversation_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            thread = await self._thread(conn, project, conversation_id)
        return conversation_object(thread)

    async def update(self, project: str, conversation_id: str, body: ConversationUpdate
                     ) -> dict[str, Any]:
        async with self.db.write() as conn:
            thread = await self._thread(conn, project, conversation_id)
            thread["metadata"] = body.metadata or {}
            await objects.save_object(conn, tables.threads, thread)
        return conversation_object(thread)

    async def delete(self, project: str, conversation_id: str) -> dict[str, Any]:
        try:
            await self.threads.delete(project, conversation_id)
        except NotFound as err:
            raise not_found("conversation", conversation_id) from err
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    # ----------------------------------------------------------------------------- items

    async def add_items(self, project: str, conversation_id: str, body: ItemsCreate
                        ) -> dict[str, Any]:
        new = _whole(body.items)
        _refuse_references(new)
        async with self.db.write() as conn:
            await self._thread(conn, project, conversation_id, adding=True)
            added = await append_to_conversation(conn, project, conversation_id, new,
                                                 _given_ids(body.items))
        return {"object": "list", "data": added,
                "first_id": added[0]["id"] if added else None,
                "last_id": added[-1]["id"] if added else None, "has_more": False}

    async def list_items(self, project: str, conversation_id: str, page: ListParams
                         ) -> dict[str, Any]:
        async with self.db.read() as conn:
            await self._thread(conn, project, conversation_id)
            found = await conversation_items(conn, conversation_id)
        return page_of(found, page)

    async def item(self, project: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            await self._thread(conn, project, conversation_id)
            found = await conversation_items(conn, conversation_id)
        for item in found:
            if item["id"] == item_id:
                return item
        raise not_found("item", item_id)

    async def delete_item(self, project: str, conversation_id: str, item_id: str
                          ) -> dict[str, Any]:
        async with self.db.write() as conn:
            thread = await self._thread(conn, project, conversation_id, adding=True)
            if not await items.delete_conversation_item(conn, conversation_id, item_id):
                raise not_found("item", item_id)
        return conversation_object(thread)

    async def _thread(self, conn: Connection, project: str, conversation_id: str,
                      adding: bool = False) -> dict[str, Any]:
        """The conversation's thread (404 if the project has none of this id); ``adding``:
        its items are to change, which a thread's active run forbids (400)."""
        thread = await objects.get_object(conn, tables.threads, conversation_id, project)
        if thread is None:
            raise not_found("conversation", conversation_id)
        if adding:
            _, active = await queries.thread_activity(conn, conversation_id, project)
            if active:
                raise bad_request(f"Can't change the items of conversation {conversation_id} "
                                  f"while its thread's run {active} is active.")
        return thread


def _refuse_references(new: list[dict[str, Any]]) -> None:
    for index, item in enumerate(new):
        if item["type"] == "item_reference":
            raise bad_request("Item references can only be given as a response's input.",
                              f"items[{index}]")
