"""Items: the Responses and Conversations APIs' unit of history, and their bridge to threads.

A response's input is a list of items (messages, function calls and their outputs, earlier
output items); a conversation is a thread whose history is read as items. Here: input as the
client gives it made whole (ids, statuses, content parts), thread messages read as message
items, and message items that a thread can hold written as thread messages. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from vtai.server import ids
from vtai.server.tools.file_search import citations

ITEM_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_",
                 "reasoning": "rs_", "file_search_call": "fs_", "code_interpreter_call": "ci_"}
THREAD_ROLES = ("user", "assistant")  # roles a thread message may have


def new_item_id(kind: str) -> str:
    return ids.new_id(ITEM_PREFIXES.get(kind, "item_"))


def order_key(item_id: str) -> str:
    """Where an item stands in its conversation: ids of every kind share one time-ordered
    body after their prefix."""
    return item_id.rsplit("_", 1)[-1]


def _text_part(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def whole_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item (as the request model dumped it, ``None`` fields left out) made whole:
    its id (a new one unless given), status and content parts in their long form."""
    kind = item.get("type") or "message"
    whole = {k: v for k, v in item.items() if v is not None}
    whole["type"] = kind
    whole.setdefault("id", new_item_id(kind))
    if kind == "message":
        content = item["content"]
        if isinstance(content, str):
            whole["content"] = [_text_part(item["role"], content)]
        else:
            whole["content"] = [_whole_part(part) for part in content]
        whole.setdefault("status", "completed")
    elif kind in ("function_call", "function_call_output"):
        whole.setdefault("status", "completed")
    return whole


def _whole_part(part: dict[str, Any]) -> dict[str, Any]:
    part = {k: v for k, v in part.items() if v is not None}
    if part["type"] == "output_text":
        part.setdefault("annotations", [])
        part.setdefault("logprobs", [])
    elif part["type"] == "input_image":
        part.setdefault("detail", "auto")
    return part


def input_items(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A response's ``input`` as whole items."""
    if value is None:
        return []
    if isinstance(value, str):
        return [whole_item({"type": "message", "role": "user", "content": value})]
    return [whole_item(item) for item in value]


def text_of(content: Any) -> str:
    """The text of an item's content: a string, or parts whose text is joined."""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text") or part.get("refusal") or "") for part in content or ()
                   if isinstance(part, dict))


# ----------------------------------------------------------------- thread messages as items


def _annotation_item(annotation: dict[str, Any]) -> dict[str, Any] | None:
    """A thread message's annotation as an output_text annotation (the file name of a
    citation is read from its marker)."""
    if annotation.get("type") == "file_citation":
        match = citations.MARKER.fullmatch(annotation.get("text") or "")
        return {"type": "file_citation", "file_id": annotation["file_citation"]["file_id"],
                "filename": match[3] if match else "", "index": annotation["start_index"]}
    if annotation.get("type") == "file_path":
        return {"type": "file_path", "file_id": annotation["file_path"]["file_id"],
                "index": annotation["start_index"]}
    return None


def message_item(message: dict[str, Any]) -> dict[str, Any]:
    """A thread message as a conversation's message item."""
    parts: list[dict[str, Any]] = []
    role = message["role"]
    for part in message.get("content") or ():
        if part["type"] == "text":
            text = part["text"]["value"]
            if role == "assistant":
                notes = [a for a in map(_annotation_item, part["text"].get("annotations") or ())
                         if a is not None]
                parts.append({"type": "output_text", "text": text, "annotations": notes,
                              "logprobs": []})
            else:
                parts.append({"type": "input_text", "text": text})
        elif part["type"] == "image_file" and role == "user":
            image = part["image_file"]
            parts.append({"type": "input_image", "file_id": image["file_id"],
                          "detail": image.get("detail") or "auto", "image_url": None})
        elif part["type"] == "image_url" and role == "user":
            image = part["image_url"]
            parts.append({"type": "input_image", "image_url": image["url"],
                          "detail": image.get("detail") or "auto", "file_id": None})
    return {"id": message["id"], "type": "message", "role": role,
            "status": message.get("status") or "completed", "content": parts}


def _annotation_thread(annotation: dict[str, Any], text: str) -> dict[str, Any] | None:
    index = int(annotation.get("index") or annotation.get("start_index") or 0)
    if annotation.get("type") == "file_citation":
        match = citations.MARKER.match(text, index)
        end = match.end() if match else index
        return {"type": "file_citation", "text": text[index:end], "start_index": index,
                "end_index": end, "file_citation": {"file_id": annotation["file_id"]}}
    if annotation.get("type") in ("file_path", "container_file_citation"):
        end = int(annotation.get("end_index") or index)
        return {"type": "file_path", "text": text[index:end], "start_index": index,
                "end_index": end, "file_path": {"file_id": annotation["file_id"]}}
    return None


def thread_message(item: dict[str, Any], thread_id: str, created_at: int | None = None,
                   assistant_id: str | None = None) -> dict[str, Any] | None:
    """A message item as a thread message, when a thread can hold it: a user's or the
    assistant's, of text and images only. None otherwise (it stays an item)."""
    if item.get("type") != "message" or item.get("role") not in THREAD_ROLES:
        return None
    content: list[dict[str, Any]] = []
    for part in item.get("content") or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = str(part.get("text") or "")
            notes = [a for a in (_annotation_thread(n, text)
                                 for n in part.get("annotations") or ()) if a is not None]
            content.append({"type": "text", "text": {"value": text, "annotations": notes}})
        elif kind == "input_image" and part.get("file_id"):
            content.append({"type": "image_file", "image_file": {
                "file_id": part["file_id"], "detail": part.get("detail") or "auto"}})
        elif kind == "input_image" and part.get("image_url"):
            content.append({"type": "image_url", "image_url": {
                "url": part["image_url"], "detail": part.get("detail") or "auto"}})
        else:
            return None
    now = created_at if created_at is not None else ids.now()
    status = item.get("status") or "completed"
    return {
        "id": item["id"], "object": "thread.message", "created_at": now,
        "assistant_id": assistant_id, "thread_id": thread_id, "run_id": None,
        "role": item["role"], "content": content, "attachments": [], "metadata": {},
        "status": status, "incomplete_details": None,
        "completed_at": now if status == "completed" else None,
        "incomplete_at": now if status == "incomplete" else None,
    }
