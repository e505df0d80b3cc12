"""The file_search tool in runs: the model calls ``file_search(queries)``; the vector stores
of the assistant and the thread are searched, the step records the results, and the model
reads them with citation markers that become ``file_citation`` annotations.

Files attached to the thread's messages for file_search are in the thread's vector store
(see threads.py), and are indexed before the search.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from sqlalchemy import func, select

from vtai.server.retrieval import stores
from vtai.server.retrieval.engine import Retrieval
from vtai.server.retrieval.threads import add_to_thread_store
from vtai.server.store import objects, tables
from vtai.server.tools.base import MessageAdditions, ToolContext, ToolResult
from vtai.server.tools.file_search import citations

NAME = "file_search"
DEFAULT_MAX_RESULTS = 20  # OpenAI's for current models
RANKER = "default_2024_08_21"
WAIT_POLL_SECONDS = 0.2

DESCRIPTION = (
    "Search the files the user has provided. Give one or more search queries; each result "
    "is a passage from a file, headed by a citation marker like 【12:0†report.pdf】. When "
    "your answer uses a passage, cite it by copying its marker right after the statement."
)


def _queries(arguments: str) -> list[str]:
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    value = parsed.get("queries", parsed.get("query"))
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [q for q in items if isinstance(q, str) and q.strip()]


def _options(run: dict[str, Any]) -> dict[str, Any]:
    for tool in run.get("tools") or []:
        if tool.get("type") == "file_search":
            return tool.get("file_search") or {}
    return {}


class FileSearchTool:
    type = "file_search"

    def __init__(self, retrieval: Retrieval) -> None:
        self.retrieval = retrieval

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": NAME, "description": DESCRIPTION,
            "parameters": {"type": "object", "properties": {"queries": {
                "type": "array", "items": {"type": "string"},
                "description": "Search queries, each a self-contained question or keywords."}},
                "required": ["queries"]},
        }}

    def initial_call(self, call_id: str, arguments: str) -> dict[str, Any]:
        return {"id": call_id, "type": "file_search", "file_search": {}}

    async def call(self, ctx: ToolContext, call_id: str, arguments: str) -> ToolResult:
        options = _options(ctx.run)
        ranking = options.get("ranking_options") or {}
        threshold = float(ranking.get("score_threshold") or 0.0)
        limit = int(options.get("max_num_results") or DEFAULT_MAX_RESULTS)
        call: dict[str, Any] = {"id": call_id, "type": "file_search", "file_search": {
            "ranking_options": {"ranker": RANKER, "score_threshold": threshold},
            "results": []}}
        queries = _queries(arguments)
        store_ids = await self._store_ids(ctx)
        if queries and store_ids:
            hits = await self.retrieval.search(store_ids, queries, limit, None, threshold)
            call["file_search"]["results"] = [
                {"file_id": h.file_id, "file_name": h.filename, "score": round(h.score, 6),
                 "content": [{"type": "text", "text": h.text}]} for h in hits]
        return ToolResult(call=call, output=self.replay(call)[1])

    def replay(self, call: dict[str, Any]) -> tuple[str, str]:
        results = (call.get("file_search") or {}).get("results") or []
        if not results:
            return "{}", "No results: the files hold nothing that matches these queries."
        parts = ["Passages found in the files, best first:"]
        for index, result in enumerate(results):
            text = "".join(c.get("text") or "" for c in result.get("content") or [])
            parts.append(f"{citations.marker(call['id'], index, result['file_name'])}\n{text}")
        return "{}", "\n\n".join(parts)

    def message_additions(self, text: str, calls: list[dict[str, Any]]) -> MessageAdditions:
        return MessageAdditions(annotations=citations.find_annotations(text, calls))

    async def _store_ids(self, ctx: ToolContext) -> list[str]:
        """Usable stores of the assistant and the thread, the thread's made or completed from
        attachments first; expired ones are left out."""
        found = list(ctx.resource_ids("file_search", "vector_store_ids"))
        attached = ctx.attachment_file_ids("file_search")
        if attached:
            thread_store = await self._thread_store(ctx, attached)
            if thread_store is not None and thread_store not in found:
                found.append(thread_store)
        usable = []
        async with self.retrieval.db.read() as conn:
            for store_id in found:
                store = await objects.get_object(conn, tables.vector_stores, store_id,
                                                 ctx.project)
                if store is not None and not stores.is_expired(store):
                    usable.append((store_id, store))
        for store_id, store in usable:
            await self.retrieval.mark_active(store_id, store)
        return [store_id for store_id, _ in usable]

    async def _thread_store(self, ctx: ToolContext, file_ids: list[str]) -> str | None:
        """The thread's store with its messages' attached files in it (they went in when
        the messages were created; a file of an older message, or in an expired store, goes
        in now), once they are indexed."""
        async with self.retrieval.db.write() as conn:
            store_id = await add_to_thread_store(conn, ctx.project, ctx.thread["id"], file_ids)
        if store_id is not None:
            self.retrieval.wake()
            await self._wait_indexed(store_id, file_ids)
        return store_id

    async def _wait_indexed(self, store_id: str, file_ids: list[str]) -> None:
        f = tables.vector_store_files
        deadline = time.monotonic() + self.retrieval.settings.search_wait_seconds
        while time.monotonic() < deadline:
            async with self.retrieval.db.read() as conn:
                pending = (await conn.execute(select(func.count()).where(
                    f.c.vector_store_id == store_id, f.c.id.in_(file_ids),
                    f.c.status == stores.IN_PROGRESS))).scalar()
            if not pending:
                return
            await asyncio.sleep(WAIT_POLL_SECONDS)
