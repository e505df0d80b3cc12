"""Script steps: what the fake model does with one chat request."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from types import UnionType
from typing import Any, TypeAlias, TypeGuard, Union, get_args, get_origin, get_type_hints

import orjson

_WORDISH = re.compile(r"\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """Split into word-ish pieces that keep their trailing whitespace (`"a b"` -> `["a ", "b"]`)."""
    return _WORDISH.findall(text)


@dataclass(frozen=True)
class Reply:
    """Answer with text, streamed as content deltas."""

    text: str = ""
    chunk_size: int | None = None
    chunks: list[str] | None = None
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    # streamed before the text as ``reasoning_content`` (llama.cpp's and vLLM's field)
    reasoning: str | None = None

    @property
    def content(self) -> str:
        return "".join(self.chunks) if self.chunks is not None else self.text

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        if self.chunk_size:
            n = self.chunk_size
            return [self.text[i : i + n] for i in range(0, len(self.text), n)]
        return split_words(self.text)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Call:
    """One function call of `ToolCalls`; `arguments` is a dict (sent as JSON) or a raw string.
    `index`: the `index` its chunks carry (default: its position), to mimic providers that
    number calls from 1 or give parallel calls one index; `name_chunks`: the name is sent in
    that many pieces (default 1, as OpenAI does); `repeat_name`: every chunk of the call
    repeats its whole name and its id, with a legacy `function_call` beside `tool_calls`
    (as llama-cpp-python's server streams calls)."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None
    index: int | None = None
    name_chunks: int = 1
    repeat_name: bool = False

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return orjson.dumps(self.arguments).decode()

    def name_pieces(self) -> list[str]:
        n = max(1, min(self.name_chunks, len(self.name)))
        size = -(-len(self.name) // n)
        return [self.name[i : i + size] for i in range(0, len(self.name), size)] or [""]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "id": self.id,
                "index": self.index, "name_chunks": self.name_chunks,
                "repeat_name": self.repeat_name}


@dataclass(frozen=True)
class ToolCalls:
    """Answer with (parallel) tool calls, optionally preceded by text."""

    calls: list[Call]
    text: str | None = None
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Error:
    """Fail with an HTTP status and OpenAI's error body; `headers` go on the response."""

    status: int = 500
    message: str | None = None
    type: str = "server_error"
    code: str | None = None
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, Any]:
        message = self.message or f"The fake model was scripted to fail with status {self.status}."
        return {"error": {"message": message, "type": self.type, "param": None, "code": self.code}}

    def to_json(self) -> dict[str, Any]:
        # `type` names the step kind in JSON, so the error's own type travels as `error_type`.
        data = asdict(self)
        data["error_type"] = data.pop("type")
        return {"type": "error", **data}


@dataclass(frozen=True)
class Drop:
    """Stream `after_chunks` content chunks of `text`, then cut the connection."""

    text: str = "partial "
    after_chunks: int = 1

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Hang:
    """Send nothing for `seconds`, then answer like an unscripted request."""

    seconds: float = 30.0

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Garbage:
    """Answer 200 with a body that is not valid JSON."""

    body: str = "not json{"

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Empty:
    """Answer 200 with nothing: an event stream (or a JSON answer) with no byte in it, as
    some servers answer when the model produced nothing."""

    def to_json(self) -> dict[str, Any]:
        return {"type": "empty"}


@dataclass(frozen=True)
class Raw:
    """Answer with `body` exactly as given (`status`, `content_type`): to replay an exchange
    recorded with a real model server."""

    body: str
    status: int = 200
    content_type: str = "text/event-stream"

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class Echo:
    """Answer with one `role: content` line per received message."""

    def to_json(self) -> dict[str, Any]:
        return {"type": "echo"}


Step: TypeAlias = Reply | ToolCalls | Error | Drop | Hang | Garbage | Empty | Raw | Echo
StepFn: TypeAlias = Callable[[dict[str, Any]], "Step | Awaitable[Step]"]
ScriptItem: TypeAlias = Step | StepFn

_TYPE_NAMES: dict[type, str] = {
    Reply: "reply",
    ToolCalls: "tool_calls",
    Error: "error",
    Drop: "drop",
    Hang: "hang",
    Garbage: "garbage",
    Empty: "empty",
    Raw: "raw",
    Echo: "echo",
}
_BY_NAME: dict[str, type] = {name: cls for cls, name in _TYPE_NAMES.items()}


def is_step(value: object) -> TypeGuard[Step]:
    return type(value) in _TYPE_NAMES


def _to_json(step: Any) -> dict[str, Any]:
    return {"type": _TYPE_NAMES[type(step)], **asdict(step)}


def _accepts(hint: Any, value: object) -> bool:
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_accepts(arg, value) for arg in get_args(hint))
    base = origin or hint
    if isinstance(value, bool):
        return base is bool
    return isinstance(value, (int, float) if base is float else base)


def _build(cls: type, params: dict[str, Any], what: str) -> Any:
    # Checked here so that a bad step sent to /_fake/script is a 400 when scripted,
    # not a 500 on some later chat request.
    hints = get_type_hints(cls)
    unknown = set(params) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown field(s) for {what}: {sorted(unknown)}")
    for name, value in params.items():
        if not _accepts(hints[name], value):
            raise ValueError(f"{what}: {name!r} must be {hints[name]}, not {value!r}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{what}: {exc}") from None


def step_from_json(data: dict[str, Any]) -> Step:
    """Build a step from its `to_json()` form; raises ValueError on anything else."""
    if not isinstance(data, dict):
        raise ValueError("a step must be a JSON object")
    kind = data.get("type")
    cls = _BY_NAME.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown step type {kind!r}; expected one of {sorted(_BY_NAME)}")
    params = {k: v for k, v in data.items() if k != "type"}
    if cls is Error and "error_type" in params:
        params["type"] = params.pop("error_type")
    if cls is ToolCalls:
        calls = params.get("calls")
        if not isinstance(calls, list) or not calls:
            raise ValueError("a tool_calls step needs a non-empty 'calls' list")
        if not all(isinstance(call, dict) for call in calls):
            raise ValueError("each call of a tool_calls step must be an object")
        params["calls"] = [_build(Call, call, "a call") for call in calls]
    step: Step = _build(cls, params, f"a {kind} step")
    return step
