"""The file_search tool: the model calls ``file_search(queries)``; the vector stores its
context names (a run's: the assistant's and the thread's; a response's: its tool's) are
searched, the call records the results, and the model reads them with citation markers that
become ``file_citation`` annotations."""

from __future__ import annotations

from typing import Any

import orjson

from vtai.server.retrieval.engine import Retrieval
from vtai.server.tools.base import MessageAdditions, ToolContext, ToolResult
from vtai.server.tools.file_search import citations

NAME = "file_search"
DEFAULT_MAX_RESULTS = 20  # OpenAI's for current models
RANKER = "default_2024_08_21"

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
        ranking = ctx.options.get("ranking_options") or {}
        threshold = float(ranking.get("score_threshold") or 0.0)
        limit = int(ctx.options.get("max_num_results") or DEFAULT_MAX_RESULTS)
        call: dict[str, Any] = {"id": call_id, "type": "file_search", "file_search": {
            "ranking_options": {"ranker": RANKER, "score_threshold": threshold},
            "results": []}}
        queries = _queries(arguments)
        attributes: list[dict[str, Any]] = []
        store_ids = await ctx.store_ids()
        if queries and store_ids:
            filters = ctx.options.get("filters")
            allowed = await self.retrieval.allowed_files(store_ids, filters) \
                if filters else None
            hits = await self.retrieval.search(store_ids, queries, limit, allowed, threshold)
            call["file_search"]["results"] = [
                {"file_id": h.file_id, "file_name": h.filename, "score": round(h.score, 6),
                 "content": [{"type": "text", "text": h.text}]} for h in hits]
            attributes = [h.attributes or {} for h in hits]
        return ToolResult(call=call, output=self.replay(call)[1],
                          extra={"queries": queries, "attributes": attributes})

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
