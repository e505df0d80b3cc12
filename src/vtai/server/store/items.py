"""Items in the database: a response's input and output, a conversation's history.

A conversation is a thread: its user and assistant messages are the thread's messages, its
other items are rows of ``items``. Read together they are ordered by their ids' time-ordered
bodies (ids of every kind share one clock after their prefix).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, select

from vtai.server import ids
from vtai.server.store import objects, tables
from vtai.server.store.sql import Connection, Sql

INPUT, OUTPUT, CONVERSATION = "input", "output", "conversation"

# The input and output items of a response and of every response before it, oldest first.
_CHAIN = Sql(
    "WITH RECURSIVE chain(id, prev, depth) AS ("
    " SELECT id, previous_response_id, 0 FROM responses WHERE id = :response_id"
    " UNION ALL SELECT r.id, r.previous_response_id, c.depth + 1 FROM responses r"
    " JOIN chain c ON r.id = c.prev WHERE c.depth < :max_depth)"
    " SELECT i.data FROM items i JOIN chain c ON i.owner_id = c.id"
    " WHERE i.kind IN ('input', 'output') ORDER BY i.seq", returns_rows=True)
MAX_CHAIN = 10_000  # responses followed back through previous_response_id


def _order(item_id: str) -> str:
    return item_id.rsplit("_", 1)[-1]


async def insert_items(conn: Connection, project: str, owner_id: str, kind: str,
                       items: list[dict[str, Any]]) -> None:
    if not items:
        return
    now = ids.now()
    await conn.execute(insert(tables.items), [
        {"id": item["id"], "project_id": project, "owner_id": owner_id, "kind": kind,
         "created_at": now, "data": objects.dumps(item)} for item in items])


async def chain_items(conn: Connection, response_id: str) -> list[dict[str, Any]]:
    """The items of ``response_id`` (input, then output) and of the responses before it."""
    rows = (await conn.sql(_CHAIN, {"response_id": response_id, "max_depth": MAX_CHAIN})).rows
    return [orjson.loads(data) for (data,) in rows]


async def owned_items(conn: Connection, owner_id: str, kind: str) -> list[dict[str, Any]]:
    i = tables.items
    rows = (await conn.execute(select(i.c.data).where(i.c.owner_id == owner_id, i.c.kind == kind)
                               .order_by(i.c.seq))).all()
    return [orjson.loads(row.data) for row in rows]


async def conversation_rows(conn: Connection, conversation_id: str
                            ) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """A conversation's history, oldest first: (item id, thread message or None, item or
    None) for each of its thread's messages and other items."""
    m, i = tables.messages, tables.items
    messages = (await conn.execute(select(m.c.id, m.c.data).where(
        m.c.thread_id == conversation_id))).all()
    others = (await conn.execute(select(i.c.id, i.c.data).where(
        i.c.owner_id == conversation_id, i.c.kind == CONVERSATION))).all()
    rows: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
        (row.id, orjson.loads(row.data), None) for row in messages]
    rows += [(row.id, None, orjson.loads(row.data)) for row in others]
    rows.sort(key=lambda row: _order(row[0]))
    return rows


async def ids_in_conversation(conn: Connection, conversation_id: str, item_ids: list[str]
                              ) -> list[str]:
    """Which of ``item_ids`` the conversation holds."""
    m, i = tables.messages, tables.items
    found = list((await conn.execute(select(m.c.id).where(
        m.c.thread_id == conversation_id, m.c.id.in_(item_ids)))).scalars().all())
    found += (await conn.execute(select(i.c.id).where(
        i.c.owner_id == conversation_id, i.c.kind == CONVERSATION,
        i.c.id.in_(item_ids)))).scalars().all()
    return found


async def find_item(conn: Connection, project: str, item_id: str
                    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The item named ``item_id`` in the project: (thread message, None) or (None, item), the
    newest row of that id; (None, None) if there is none."""
    i = tables.items
    row = (await conn.execute(select(i.c.data).where(i.c.id == item_id,
                                                     i.c.project_id == project)
                              .order_by(i.c.seq.desc()).limit(1))).first()
    if row is not None:
        return None, orjson.loads(row.data)
    message = await objects.get_object(conn, tables.messages, item_id, project)
    return message, None


async def delete_conversation_item(conn: Connection, conversation_id: str, item_id: str
                                   ) -> bool:
    m, i = tables.messages, tables.items
    gone = await objects.delete_objects(conn, m, m.c.id == item_id,
                                        m.c.thread_id == conversation_id)
    gone += await objects.delete_objects(conn, i, i.c.id == item_id,
                                         i.c.owner_id == conversation_id,
                                         i.c.kind == CONVERSATION)
    return gone > 0


async def delete_owned(conn: Connection, owner_id: str) -> None:
    i = tables.items
    await objects.delete_objects(conn, i, i.c.owner_id == owner_id)

