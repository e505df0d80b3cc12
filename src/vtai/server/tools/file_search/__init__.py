"""The file_search tool: vector stores (API, ingestion, hybrid search) and the tool in runs.

See docs/file-search.md.
"""

from __future__ import annotations

import logging

from vtai.server.tools.file_search.embedders import Embedders
from vtai.server.tools.file_search.ingest import Ingestor
from vtai.server.tools.file_search.routes import router
from vtai.server.tools.file_search.search import SearchIndex
from vtai.server.tools.file_search.service import FileSearch
from vtai.server.tools.file_search.settings import FileSearchSettings
from vtai.server.tools.file_search.tool import FileSearchTool
from vtai.server.tools.file_search.vectors import VectorCache
from vtai.server.tools.registry import PluginEnv, ToolPlugin

log = logging.getLogger("vtai.file_search")


def plugin(env: PluginEnv) -> ToolPlugin:
    settings = FileSearchSettings()
    embedders = Embedders(settings, env.providers.default)
    index = SearchIndex(env.db, embedders, VectorCache(settings.search_cache_mb << 20))
    ingestor = Ingestor(env.db, env.blobs, embedders, settings.search_lease_seconds,
                        settings.search_max_file_tokens)
    fs = FileSearch(env.db, index, settings, ingestor.wake)

    async def start() -> None:
        embedders.start()  # in the background: start-up does not wait for it
        await ingestor.start()
        if not env.db.is_sqlite:
            log.info("file search on PostgreSQL: words by tsvector, vectors searched exactly "
                     "in this process (pgvector is not used)")

    async def stop() -> None:
        await ingestor.stop()
        await embedders.close()

    return ToolPlugin(tool=FileSearchTool(fs), routers=[router(fs)], start=start,
                      stop=stop)
