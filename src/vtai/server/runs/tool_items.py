"""A built-in tool's call as a response's output item, and back.

The tools record a call in the shape of an Assistants run step (``tools.base.ToolResult``):
here that call becomes a ``file_search_call`` or ``code_interpreter_call`` item, and an item
given back as input becomes the step call the tool replays to the model. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

ITEM_TYPES = {"file_search": "file_search_call", "code_interpreter": "code_interpreter_call"}
TOOL_TYPES = {item: tool for tool, item in ITEM_TYPES.items()}


def call_item(call: dict[str, Any], extra: dict[str, Any], container_id: str,
              image_url: Any = None) -> dict[str, Any]:
    """The output item of a built-in tool's ``call`` (a step call) that ran. ``extra``: what
    the tool gave besides the call (ToolResult.extra); ``image_url(file_id)``: the url an
    image output is shown at."""
    if call["type"] == "file_search":
        attributes = extra.get("attributes") or []
        results = []
        for index, result in enumerate(call["file_search"].get("results") or ()):
            results.append({
                "file_id": result["file_id"], "filename": result["file_name"],
                "score": result["score"],
                "text": "".join(c.get("text") or "" for c in result.get("content") or ()),
                "attributes": attributes[index] if index < len(attributes) else {}})
        return {"id": call["id"], "type": "file_search_call", "status": "completed",
                "queries": list(extra.get("queries") or []), "results": results}
    details = call["code_interpreter"]
    outputs: list[dict[str, Any]] = []
    for output in details.get("outputs") or ():
        if output["type"] == "logs":
            outputs.append({"type": "logs", "logs": output["logs"]})
        elif output["type"] == "image":
            file_id = output["image"]["file_id"]
            outputs.append({"type": "image",
                            "url": image_url(file_id) if image_url else file_id})
    return {"id": call["id"], "type": "code_interpreter_call", "status": "completed",
            "code": details.get("input") or "", "container_id": container_id,
            "outputs": outputs}


def step_call(item: dict[str, Any]) -> dict[str, Any] | None:
    """A built-in tool's item as the step call its tool replays (None for other items)."""
    if item.get("type") == "file_search_call":
        return {"id": item["id"], "type": "file_search", "file_search": {"results": [
            {"file_id": r.get("file_id"), "file_name": r.get("filename") or "",
             "score": r.get("score") or 0.0,
             "content": [{"type": "text", "text": r.get("text") or ""}]}
            for r in item.get("results") or ()]}}
    if item.get("type") == "code_interpreter_call":
        outputs = [{"type": "logs", "logs": o.get("logs") or ""}
                   for o in item.get("outputs") or () if o.get("type") == "logs"]
        return {"id": item["id"], "type": "code_interpreter", "code_interpreter": {
            "input": item.get("code") or "", "outputs": outputs}}
    return None


def for_include(item: dict[str, Any], include: set[str]) -> dict[str, Any]:
    """An output item as returned: a built-in call's results and outputs only when the
    request's ``include`` asks for them (as OpenAI's)."""
    if item.get("type") == "file_search_call" and "file_search_call.results" not in include:
        return {**item, "results": None}
    if item.get("type") == "code_interpreter_call" \
            and "code_interpreter_call.outputs" not in include:
        return {**item, "outputs": None}
    if item.get("type") == "message" and "message.output_text.logprobs" not in include:
        content = [{**part, "logprobs": []} if part.get("logprobs") else part
                   for part in item.get("content") or ()]
        return {**item, "content": content}
    return item
