"""OpenAI chat-completion wire shapes: prompt reading, usage estimates, chunks and completions."""

from __future__ import annotations

import secrets
import time
from typing import Any, TypeAlias

import orjson

from .steps import Call, Reply, ToolCalls, split_words

# A streamed answer, planned up front: bytes to send, floats are pauses (seconds) between them.
Plan: TypeAlias = list[bytes | float]

DONE = b"data: [DONE]\n\n"


def message_text(message: Any) -> str:
    """The text of one chat message; text parts of a content list are joined with a space."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(_messages(body)):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def _tool_calls_text(message: dict[str, Any]) -> list[str]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    rendered = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            rendered.append(f"{function.get('name')}({function.get('arguments', '')})")
    return rendered


def echo_text(body: dict[str, Any]) -> str:
    """One `role: content` line per message; an assistant's tool calls follow as `name(args)`."""
    lines = []
    for message in _messages(body):
        if not isinstance(message, dict):
            continue
        parts = [message_text(message), *_tool_calls_text(message)]
        lines.append(f"{message.get('role')}: {' '.join(p for p in parts if p)}")
    return "\n".join(lines)


def count_tokens(text: str) -> int:
    """About four characters a token, like OpenAI's rule of thumb; deterministic by design."""
    return (len(text) + 3) // 4


def prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in _messages(body):
        if isinstance(message, dict):
            text = " ".join([message_text(message), *_tool_calls_text(message)])
            total += count_tokens(text) + 3
    return total


def usage(
    body: dict[str, Any], completion: int, override: dict[str, int] | None = None
) -> dict[str, int]:
    prompt = prompt_tokens(body)
    result = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if override:
        result.update(override)
        if "total_tokens" not in override:
            result["total_tokens"] = result["prompt_tokens"] + result["completion_tokens"]
    return result


def tool_calls_tokens(step: ToolCalls) -> int:
    return count_tokens(step.text or "") + sum(
        count_tokens(call.name + call.arguments_json) for call in step.calls
    )


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_urlsafe(length)[:length]


def call_id(call: Call) -> str:
    return call.id or new_id("call_")


def split_arguments(arguments: str) -> list[str]:
    """Two or three fragments, as real models emit arguments a few tokens at a time."""
    if not arguments:
        return []
    parts = min(3, len(arguments))
    size = -(-len(arguments) // parts)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


class ChunkWriter:
    """Encodes `chat.completion.chunk` SSE events; the constant head is encoded once per stream."""

    def __init__(self, model: str) -> None:
        head = orjson.dumps(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
        )
        self._open = b"data: " + head[:-1]
        self._choice = self._open + b',"choices":[{"index":0,"delta":'

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        tail = b',"logprobs":' + orjson.dumps(logprobs) + b',"finish_reason":' + \
            orjson.dumps(finish_reason) + b"}]}\n\n"
        return self._choice + orjson.dumps(delta) + tail

    def usage(self, usage: dict[str, int]) -> bytes:
        return self._open + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"


def _paced(plan: Plan, items: list[bytes], delay: float) -> None:
    for i, item in enumerate(items):
        if i and delay:
            plan.append(float(delay))
        plan.append(item)


def token_logprobs(piece: str, top: int) -> dict[str, Any]:
    """Made-up log probabilities of a piece of text, in the chat API's shape."""
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    alternatives = [entry(f"{piece}~{n}", -1.0 - n) for n in range(1, top + 1)]
    return {"content": [{**entry(piece, -0.25), "top_logprobs": alternatives}]}


def reply_plan(writer: ChunkWriter, step: Reply, pieces: list[str] | None = None,
               logprobs: int | None = None) -> Plan:
    """Role chunk, reasoning chunks and content chunks, without the finish chunk (see
    `finish_plan`); ``logprobs``: top log probabilities to give with each content chunk
    (None: none asked for)."""
    plan: Plan = [float(step.first_token_delay)] if step.first_token_delay else []
    plan.append(writer.delta({"role": "assistant", "content": ""}))
    chunks = [writer.delta({"reasoning_content": piece})
              for piece in split_words(step.reasoning or "")]
    chunks += [writer.delta({"content": piece}, logprobs=None if logprobs is None
                            else token_logprobs(piece, logprobs))
               for piece in (step.pieces() if pieces is None else pieces)]
    _paced(plan, chunks, step.chunk_delay)
    return plan


def tool_calls_plan(writer: ChunkWriter, step: ToolCalls) -> Plan:
    plan: Plan = [float(step.first_token_delay)] if step.first_token_delay else []
    plan.append(writer.delta({"role": "assistant", "content": ""}))
    chunks = [writer.delta({"content": piece}) for piece in split_words(step.text or "")]
    for position, call in enumerate(step.calls):
        index = position if call.index is None else call.index
        if call.repeat_name:
            chunks += _repeated_name_chunks(writer, call, index)
            continue
        name, *more_name = call.name_pieces()
        first = {
            "index": index,
            "id": call_id(call),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        chunks.append(writer.delta({"tool_calls": [first]}))
        for piece in more_name:
            chunks.append(writer.delta({"tool_calls": [{"index": index,
                                                        "function": {"name": piece}}]}))
        for fragment in split_arguments(call.arguments_json):
            part = {"index": index, "function": {"arguments": fragment}}
            chunks.append(writer.delta({"tool_calls": [part]}))
    _paced(plan, chunks, step.chunk_delay)
    return plan


def _repeated_name_chunks(writer: ChunkWriter, call: Call, index: int) -> list[bytes]:
    """A call as llama-cpp-python's server streams it: each chunk repeats the whole name and
    the id beside a fragment of the arguments, with the legacy ``function_call`` too, and
    null for the fields it does not fill."""
    identity = call_id(call)
    chunks = []
    for fragment in [*split_arguments(call.arguments_json), ""]:
        function = {"name": call.name, "arguments": fragment}
        chunks.append(writer.delta({
            "role": None, "content": None, "function_call": function,
            "tool_calls": [{"index": index, "id": identity, "type": "function",
                            "function": function}]}))
    return chunks


def finish_plan(
    plan: Plan, writer: ChunkWriter, finish_reason: str, usage: dict[str, int] | None
) -> Plan:
    """Append the finish chunk, the usage chunk when asked for (`usage` not None), and [DONE]."""
    plan.append(writer.delta({}, finish_reason))
    if usage is not None:
        plan.append(writer.usage(usage))
    plan.append(DONE)
    return plan


def completion(
    model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, int]
) -> bytes:
    return orjson.dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "refusal": None, **message},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
    )


def tool_calls_message(step: ToolCalls) -> dict[str, Any]:
    return {
        "content": step.text,
        "tool_calls": [
            {
                "id": call_id(call),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in step.calls
        ],
    }
