"""Tool lists as VT.ai's docs write them, in the form the Assistants API v2 takes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def normalize_tools(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """``{"type": "retrieval"}`` is the v1 name of file_search, which v2 servers refuse."""
    normalized = []
    for tool in tools or []:
        entry = dict(tool)
        if entry.get("type") == "retrieval":
            entry["type"] = "file_search"
        normalized.append(entry)
    return normalized
