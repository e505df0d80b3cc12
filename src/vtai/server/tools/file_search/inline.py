"""Vector stores given inline in ``tool_resources.file_search.vector_stores`` (assistants and
threads): created with their files in the caller's transaction, then known by their ids."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from vtai.server.api.common import Metadata, Strict
from vtai.server.api.errors import bad_request, param_path
from vtai.server.api.references import require_files
from vtai.server.store.db import Connection
from vtai.server.tools.file_search import stores
from vtai.server.tools.file_search.requests import ChunkingStrategy, strategy_of

PARAM = "tool_resources.file_search.vector_stores"


class InlineVectorStore(Strict):
    file_ids: list[str] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


async def create_inline_stores(conn: Connection, project: str, specs: list[dict[str, Any]]
                               ) -> list[str]:
    created = []
    for index, spec in enumerate(specs):
        try:
            inline = InlineVectorStore.model_validate(spec)
        except ValidationError as err:
            error = err.errors()[0]
            where = param_path(error["loc"]) or ""
            param = f"{PARAM}[{index}]" + (f".{where}" if where else "")
            raise bad_request(f"Invalid '{param}': {error['msg']}", param,
                              "invalid_value") from err
        await require_files(conn, project, inline.file_ids)
        store = stores.new_store("", inline.metadata, None)
        await stores.insert_store(conn, project, store)
        if inline.file_ids:
            await stores.attach(conn, project, store, inline.file_ids, None,
                                strategy_of(inline.chunking_strategy))
            await stores.recount_store(conn, store)
            await stores.notify_work(conn)
        created.append(store["id"])
    return created
