"""A response's history of items as the chat messages of its model calls.

The history is what came before (the previous responses' input and output, or the
conversation's items) and the response's own input, oldest first. Messages keep their role
(``developer`` is sent as ``system``, which every chat server takes); function calls and
their outputs become an assistant message's ``tool_calls`` and ``tool`` messages; a built-in
tool's call is replayed as its tool made and read it. Reasoning items are not sent back (the
chat API has no place for them). Pure: images and files are read beforehand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtai.server.runs.items import text_of
from vtai.server.runs.prompt import image_part, message_tokens
from vtai.server.runs.tokens import Count, estimate

# A built-in tool's item as the model made and read it: (function name, arguments, output).
ReplayItem = Callable[[dict[str, Any]], "tuple[str, str, str] | None"]


@dataclass
class Attachments:
    """What the prompt shows of files named by items: data URLs of images by file id, and
    input files (their name and text) by file id (or by file name, for ``file_data``)."""

    images: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def image_file_ids(items: list[dict[str, Any]]) -> set[str]:
    return {part["file_id"] for part in _parts(items, "input_image") if part.get("file_id")}


def input_files(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(_parts(items, "input_file"))


def _parts(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [part for item in items if item.get("type") == "message"
            and isinstance(item.get("content"), list)
            for part in item["content"] if isinstance(part, dict) and part.get("type") == kind]


def _file_key(part: dict[str, Any]) -> str:
    return str(part.get("file_id") or part.get("filename") or part.get("file_url") or "")


def _user_content(content: list[dict[str, Any]], attached: Attachments) -> Any:
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image":
            url = part.get("image_url") or attached.images.get(str(part.get("file_id")))
            if url:
                parts.append(image_part(url, part))
            else:
                parts.append({"type": "text",
                              "text": f"[image file {part.get('file_id')}: not available]"})
        elif kind == "input_file":
            name = part.get("filename") or part.get("file_id") or "file"
            parts.append({"type": "text", "text": attached.texts.get(
                _file_key(part), f"[file {name}: its text could not be read]")})
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def missing_outputs(items: list[dict[str, Any]]) -> list[str]:
    """Call ids of function calls in ``items`` that no function_call_output answers."""
    answered = {item.get("call_id") for item in items
                if item.get("type") == "function_call_output"}
    return [item["call_id"] for item in items if item.get("type") == "function_call"
            and item.get("call_id") not in answered]


def build_chat(items: list[dict[str, Any]], instructions: str | None,
               replay: ReplayItem, attached: Attachments | None = None,
               count: Count = estimate) -> tuple[list[dict[str, Any]], int]:
    """The chat messages of ``items`` (oldest first) after ``instructions``, and their prompt
    tokens as ``count`` counts them."""
    attached = attached or Attachments()
    chat: list[dict[str, Any]] = []
    if instructions:
        chat.append({"role": "system", "content": instructions})
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            content = item.get("content")
            if role == "assistant":
                chat.append({"role": "assistant", "content": text_of(content)})
            elif isinstance(content, str):
                chat.append({"role": "system" if role == "developer" else role,
                             "content": content})
            else:
                chat.append({"role": "system" if role == "developer" else role,
                             "content": _user_content(content or [], attached)})
        elif kind == "function_call":
            _add_call(chat, item["call_id"], item["name"], item.get("arguments") or "")
        elif kind == "function_call_output":
            output = item.get("output")
            chat.append({"role": "tool", "tool_call_id": item["call_id"],
                         "content": output if isinstance(output, str) else text_of(output)})
        elif (replayed := replay(item)) is not None:
            name, arguments, output = replayed
            _add_call(chat, item["id"], name, arguments)
            chat.append({"role": "tool", "tool_call_id": item["id"], "content": output})
    return chat, sum(message_tokens(m, count) for m in chat)


def _add_call(chat: list[dict[str, Any]], call_id: str, name: str, arguments: str) -> None:
    """A tool call joins the assistant message just before it (the model's text, or its
    other calls of the same answer): chat templates refuse two assistant messages in a row."""
    call = {"id": call_id, "type": "function", "function": {"name": name,
                                                            "arguments": arguments}}
    last = chat[-1] if chat else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if not last.get("content"):
            last.pop("content", None)  # (no ``content: null``: some servers refuse it)
        return
    chat.append({"role": "assistant", "tool_calls": [call]})
