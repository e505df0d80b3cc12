"""Turning a thread into chat messages for the model, with OpenAI's truncation strategies.

Token counts are the model's own when its tokenizer is known and loaded, else an estimate
(see runs.tokens): a message's text (and its tool calls' names and arguments), plus four
tokens per message and 85 per image (OpenAI's count for a low-detail image). What runs and
steps record as usage is the upstream's own report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vtai.server.runs.tokens import Count, estimate

MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 85


def message_tokens(message: dict[str, Any], count: Count) -> int:
    """A chat message's tokens: its text, its tool calls' names and arguments, its images."""
    content = message.get("content")
    texts: list[str] = []
    images = 0
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if part.get("type") == "text":
                texts.append(part["text"])
            else:
                images += 1
    for call in message.get("tool_calls") or ():
        texts += [call["function"]["name"], call["function"]["arguments"]]
    return MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS * images + count("\n".join(texts))


def _order_key(object_id: str) -> str:
    # Ids of every kind share one time-ordered body after their prefix.
    return object_id.split("_", 1)[-1]


def image_part(url: str, given: dict[str, Any]) -> dict[str, Any]:
    """A chat image part for ``url``, with the ``detail`` the message's part gave, if any."""
    image = {"url": url}
    if given.get("detail"):
        image["detail"] = given["detail"]
    return {"type": "image_url", "image_url": image}


def _message_to_chat(message: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """``images``: data URLs of image files by id (see runs.images)."""
    parts: list[dict[str, Any]] = []
    for part in message["content"]:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]["value"]})
        elif part["type"] == "image_url":
            parts.append(image_part(part["image_url"]["url"], part["image_url"]))
        elif part["type"] == "image_file":
            file_id = part["image_file"]["file_id"]
            if file_id not in images:
                parts.append({"type": "text", "text": f"[image file {file_id}: not available]"})
                continue
            parts.append(image_part(images[file_id], part["image_file"]))
    if message["role"] == "assistant" or all(p["type"] == "text" for p in parts):
        return {"role": message["role"],
                "content": "\n".join(p["text"] for p in parts if p["type"] == "text")}
    return {"role": message["role"], "content": parts}


Replay = Callable[[dict[str, Any]], "tuple[str, str, str] | None"]


def replay_function(call: dict[str, Any]) -> tuple[str, str, str] | None:
    """A function call as the model made it and read its result: (name, arguments, output)."""
    if call.get("type") != "function":
        return None
    fn = call["function"]
    return fn["name"], fn["arguments"], fn.get("output") or ""


def _step_to_chat(step: dict[str, Any], replay: Replay) -> list[dict[str, Any]]:
    calls = [(c["id"], r) for c in step["step_details"]["tool_calls"]
             if (r := replay(c)) is not None]
    if not calls:
        return []
    # (no "content" at all: some servers refuse the null that OpenAI's API allows)
    out: list[dict[str, Any]] = [{
        "role": "assistant",
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": name, "arguments": arguments}}
                       for call_id, (name, arguments, _) in calls],
    }]
    for call_id, (_, _, output) in calls:
        out.append({"role": "tool", "tool_call_id": call_id, "content": output})
    return out


# Chat messages from one thread message or tool step: (order, chat messages, droppable,
# the run that made them: None for a message of the user's).
_Group = tuple[str, list[dict[str, Any]], bool, str | None]


def _join_answers(groups: list[_Group]) -> list[_Group]:
    """An answer the model gave as text and tool calls at once is stored as a message and
    the tool_calls step after it: it is replayed as it came, one assistant message (some
    models' chat templates refuse two assistant messages in a row)."""
    joined: list[_Group] = []
    for group in groups:
        head = group[1][0] if group[1] else {}
        if joined and group[3] is not None and head.get("tool_calls") \
                and "content" not in head:
            order, before, droppable, run_id = joined[-1]
            if run_id == group[3] and len(before) == 1 and "tool_calls" not in before[0]:
                answer = {**head, "content": before[0]["content"]}
                joined[-1] = (order, [answer, *group[1][1:]], droppable and group[2], run_id)
                continue
        joined.append(group)
    return joined


def build_messages(
    run: dict[str, Any],
    messages: list[dict[str, Any]],
    tool_steps: list[dict[str, Any]],
    replay: Replay = replay_function,
    count: Count = estimate,
    images: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Chat messages for one model call, and their prompt tokens as ``count`` counts them.

    ``messages`` and ``tool_steps`` are the thread's, oldest first; ``images``: data URLs
    of their image files (runs.images). Truncation drops whole thread messages (and tool
    calls older than what is kept), oldest first; by ``max_prompt_tokens``, never the
    newest message (the returned count is then over it).
    """
    groups: list[_Group] = []
    for message in messages:
        if not message["content"]:  # an empty answer (earlier versions left some)
            continue
        made_by = message.get("run_id") if message["role"] == "assistant" else None
        groups.append((_order_key(message["id"]), [_message_to_chat(message, images or {})],
                       True, made_by))
    for step in tool_steps:
        droppable = step["run_id"] != run["id"]  # the current run's calls are always sent
        groups.append((_order_key(step["id"]), _step_to_chat(step, replay), droppable,
                       step["run_id"]))
    groups.sort(key=lambda g: g[0])
    groups = _join_answers(groups)

    strategy = run.get("truncation_strategy") or {}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages") is not None:
        keep = strategy["last_messages"]
        message_orders = [g[0] for g in groups if g[2] and g[1] and g[1][0]["role"] != "tool"
                          and g[1][0].get("content") is not None]
        cutoff = message_orders[-keep] if 0 < keep <= len(message_orders) else None
        if keep == 0:
            groups = [g for g in groups if not g[2]]
        elif cutoff is not None:
            groups = [g for g in groups if g[0] >= cutoff or not g[2]]

    system: list[dict[str, Any]] = []
    if run.get("instructions"):
        system.append({"role": "system", "content": run["instructions"]})
    budget = run.get("max_prompt_tokens")
    tokens = sum(message_tokens(m, count) for m in system) + sum(
        message_tokens(m, count) for g in groups for m in g[1])
    if budget is not None:
        # The newest message is what the run answers: never dropped. If the prompt is over
        # the budget with it alone, the run ends incomplete (reason max_prompt_tokens).
        newest = max((_order_key(m["id"]) for m in messages if m["content"]), default=None)
        while tokens > budget:
            index = next((i for i, g in enumerate(groups) if g[2] and g[0] != newest), None)
            if index is None:
                break
            tokens -= sum(message_tokens(m, count) for m in groups.pop(index)[1])
    chat = system + [m for g in groups for m in g[1]]
    return chat, tokens
