"""A thread's own vector store: files attached to its messages for file_search go into it, as
OpenAI's do, from the moment the message is created (``threads.retrieve`` then shows it in
``tool_resources.file_search.vector_store_ids``). It is made on first use and expires after 7
idle days."""

from __future__ import annotations

import orjson
from openai.types.beta import Thread
from sqlalchemy import select

from vtai.server.retrieval import stores
from vtai.server.retrieval.chunking import AUTO
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.db import Connection

THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": 7}


async def add_to_thread_store(conn: Connection, project: str, thread_id: str,
                              file_ids: list[str]) -> str | None:
    """Put the project's files among ``file_ids`` into the thread's vector store (its
    first one, made now if it has none or it expired), in ``conn``'s transaction; their
    ingestion starts when it commits. The store's id, None if the thread is not there."""
    t = tables.threads
    data = (await conn.execute(select(t.c.data).where(
        t.c.id == thread_id, t.c.project_id == project).with_for_update())).scalar()
    if data is None:
        return None
    thread = orjson.loads(data)
    resources = thread.get("tool_resources") or {}
    existing = (resources.get("file_search") or {}).get("vector_store_ids") or []
    store = await stores.lock_store(conn, existing[0], project) if existing else None
    if store is None or stores.is_expired(store):
        store = stores.new_store("", {}, THREAD_STORE_EXPIRY)
        await stores.insert_store(conn, project, store)
        resources["file_search"] = {"vector_store_ids": [store["id"]]}
        thread["tool_resources"] = resources
        await objects.save_object(conn, t, shaped(Thread, thread))
    files = tables.files
    live = set((await conn.execute(select(files.c.id).where(
        files.c.id.in_(file_ids), files.c.project_id == project))).scalars())
    await stores.add_files(conn, project, store, [f for f in file_ids if f in live], None,
                           AUTO)
    return str(store["id"])
