"""What the routers, the tool and the inline helper share: the database, the search index,
and a way to start ingestion once files are attached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vtai.server import ids
from vtai.server.api.errors import bad_request, not_found
from vtai.server.api.references import require_files
from vtai.server.store.db import Connection, Database
from vtai.server.tools.file_search import stores
from vtai.server.tools.file_search.chunking import Strategy
from vtai.server.tools.file_search.search import SearchIndex
from vtai.server.tools.file_search.settings import FileSearchSettings

ACTIVE_WRITE_SECONDS = 60


@dataclass
class FileSearch:
    db: Database
    index: SearchIndex
    settings: FileSearchSettings
    wake: Callable[[], None]  # this process's ingestion, if it runs here

    async def usable_store(self, conn: Connection, project: str, store_id: str,
                           param: str | None = None) -> dict[str, Any]:
        """A store of this project that has not expired, locked for changes."""
        store = await stores.lock_store(conn, store_id, project)
        if store is None:
            raise not_found("vector store", store_id)
        if stores.is_expired(store):
            raise bad_request(f"Vector store {store_id} has expired and can no longer be used.",
                              param)
        return store

    async def mark_active(self, store_id: str, seen: dict[str, Any]) -> None:
        """The store was searched: its idle expiry starts again (written at most once a
        minute, so searches rarely write)."""
        if ids.now() - (seen.get("last_active_at") or 0) < ACTIVE_WRITE_SECONDS:
            return
        async with self.db.write() as conn:
            store = await stores.lock_store(conn, store_id)
            if store is not None and not stores.is_expired(store):
                stores.touch(store)
                await stores.save_store(conn, store)

    async def add_files(self, conn: Connection, project: str, store: dict[str, Any],
                        file_ids: list[str], attributes: dict[str, Any] | None,
                        strategy: Strategy, batch_id: str | None = None,
                        per_file: dict[str, tuple[dict[str, Any] | None, Strategy]] | None = None
                        ) -> list[dict[str, Any]]:
        """Attach files of the project to a locked store; ingestion starts when the
        transaction commits (call ``wake`` after it)."""
        await require_files(conn, project, file_ids)
        return await stores.add_files(conn, project, store, file_ids, attributes, strategy,
                                      batch_id, per_file)
