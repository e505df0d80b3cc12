"""``tool_resources`` of assistants and threads in the object's form: the files and vector
stores they name must be the project's, and vector stores given inline are created (with
their files) in the caller's transaction."""

from __future__ import annotations

from typing import Any

from vtai.server.errors import bad_request
from vtai.server.protocol.resources import ToolResources
from vtai.server.protocol.threads import resource_file_ids
from vtai.server.protocol.vector_stores import InlineVectorStore
from vtai.server.retrieval import stores
from vtai.server.services.references import require_files, require_vector_stores
from vtai.server.services.vector_stores import strategy_of
from vtai.server.store.sql import Connection


async def tool_resources(resources: ToolResources | None, conn: Connection,
                         project: str) -> dict[str, Any]:
    """tool_resources in wire form, checked; inline vector stores created and listed by id."""
    if resources is None:
        return {}
    await require_files(conn, project, resource_file_ids(resources))
    out: dict[str, Any] = {}
    if resources.code_interpreter is not None:
        out["code_interpreter"] = {"file_ids": resources.code_interpreter.file_ids}
    if resources.file_search is not None:
        store_ids = list(resources.file_search.vector_store_ids)
        await require_vector_stores(conn, project, store_ids)
        if resources.file_search.vector_stores:
            if store_ids:
                raise bad_request(
                    "Only one vector store can be attached: give either "
                    "tool_resources.file_search.vector_store_ids or "
                    "tool_resources.file_search.vector_stores.",
                    "tool_resources.file_search.vector_stores")
            store_ids = [await _inline_store(conn, project, inline)
                         for inline in resources.file_search.vector_stores]
        out["file_search"] = {"vector_store_ids": store_ids}
    return out


async def _inline_store(conn: Connection, project: str, inline: InlineVectorStore) -> str:
    """A vector store given inline, made with its files (ingested once committed)."""
    await require_files(conn, project, inline.file_ids)
    store = stores.new_store("", inline.metadata, None)
    await stores.insert_store(conn, project, store)
    if inline.file_ids:
        await stores.add_files(conn, project, store, inline.file_ids, None,
                               strategy_of(inline.chunking_strategy))
    return str(store["id"])
