"""The response object: made from the request, shown with what ``include`` asks for.

Keys starting with ``_`` are the server's own (what the request asked to include, the
container an ``auto`` code interpreter runs in) and are never shown.
"""

from __future__ import annotations

from typing import Any

from vtai.server import ids
from vtai.server.runs import tool_items


def new_response(response_id: str, request: dict[str, Any], status: str,
                 conversation_id: str | None, container: str | None) -> dict[str, Any]:
    """The response object of a new response. ``request``: the body as the request model
    dumps it (by alias, ``None`` fields left out)."""
    text = dict(request.get("text") or {})
    text.setdefault("format", {"type": "text"})
    text.setdefault("verbosity", "medium")
    reasoning = request.get("reasoning") or {}
    data: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": ids.now(), "status": status,
        "background": bool(request.get("background")), "completed_at": None,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "metadata": request.get("metadata") or {}, "model": request["model"], "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": request.get("safety_identifier"), "service_tier": "default",
        "store": request.get("store", True), "temperature": request.get("temperature", 1.0),
        "text": text, "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [], "top_logprobs": request.get("top_logprobs", 0),
        "top_p": request.get("top_p", 1.0), "truncation": request.get("truncation", "disabled"),
        "_include": request.get("include") or [],
    }
    if request.get("user") is not None:  # (``user`` and ``usage`` are left out, not null)
        data["user"] = request["user"]
    if container is not None:
        data["_container"] = container
    return data


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the response shows it: a function's ``parameters`` and ``strict`` always
    (``strict`` is true unless the request said otherwise, as OpenAI's)."""
    if tool["type"] != "function":
        return tool
    return {"parameters": None, **tool, "strict": tool.get("strict", True)}


def creation_events(data: dict[str, Any]) -> int:
    """How many events a response's stream has when it is made: ``response.created``, and
    ``response.queued`` for a background response."""
    return 2 if data.get("background") else 1


def public(data: dict[str, Any], include: list[str] | None = None) -> dict[str, Any]:
    """The response as the API returns it; ``include``: what a request asks to include
    (the creating request's when None)."""
    wanted = set(data.get("_include") or () if include is None else include)
    shown = {k: v for k, v in data.items() if not k.startswith("_")}
    shown["output"] = [tool_items.for_include(item, wanted) for item in data.get("output") or ()]
    shown["tools"] = [_tool(tool) for tool in data.get("tools") or ()]
    return shown
