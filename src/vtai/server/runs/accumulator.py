"""Streamed chat completion chunks, as OpenAI-compatible servers send them, gathered into
what the answer says: its text, its tool calls, how it ended and what it cost.

Servers differ in how they stream a tool call, and every style is read here:

- the name once, in the call's first chunk, then the arguments in pieces (OpenAI);
- the name in pieces (``"get_"``, ``"weather"``);
- the whole name (and the id) repeated in every chunk of the call (llama-cpp-python);
- calls numbered from 1, or parallel calls sharing one ``index`` with different ids;
- only the legacy ``function_call`` field.

``Accumulator.feed`` turns each chunk into pieces (text, a call opened, a call's name
complete, more of a named call), which the engine streams to its clients as it likes. No
I/O: this module only reads dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(eq=False)
class CallDraft:
    """A tool call as the model streamed it so far."""

    upstream_id: str = ""  # the id the model gave it, if any
    name: str = ""
    arguments: str = ""
    named: bool = False  # its name is complete


class Text(NamedTuple):
    text: str
    logprobs: tuple[dict[str, Any], ...] = ()  # the chunk's, when the request asked for them


class Reasoning(NamedTuple):
    """Reasoning the server streams beside the answer (``reasoning_content``, or
    ``reasoning``: llama.cpp, vLLM, Ollama, DeepSeek)."""

    text: str


class CallOpened(NamedTuple):
    """A new call began (its name may be incomplete still)."""

    call: CallDraft


class CallNamed(NamedTuple):
    """The call's name is complete: its arguments began (the call holds their first
    piece), another call began, or the answer ended."""

    call: CallDraft


class CallPiece(NamedTuple):
    """More of a named call: a piece of its arguments, and of its name if that still grew
    (a name some servers finish after the arguments began)."""

    call: CallDraft
    arguments: str
    name: str = ""


Piece = Text | Reasoning | CallOpened | CallNamed | CallPiece


def merge_name(current: str, piece: str) -> str:
    """A call's name with the next chunk's ``piece`` of it: appended, unless the piece is
    the whole name again (repeated in every chunk) or the name so far and more (sent whole
    each time it grows)."""
    return piece if piece.startswith(current) else current + piece


def _usage(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    return {key: int(value.get(key) or 0) for key in USAGE_KEYS}


def _logprobs(choice: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    value = choice.get("logprobs")
    content = value.get("content") if isinstance(value, dict) else None
    return tuple(t for t in content if isinstance(t, dict)) if isinstance(content, list) else ()


@dataclass
class Accumulator:
    """One model answer, chunk by chunk."""

    text: str = ""
    reasoning: str = ""
    calls: list[CallDraft] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    # the call at each upstream index (a call without an index has one of its own)
    _by_index: dict[int, CallDraft] = field(default_factory=dict)

    def feed(self, chunk: dict[str, Any]) -> list[Piece]:
        """What ``chunk`` adds to the answer."""
        pieces: list[Piece] = []
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._on_delta(delta, pieces, _logprobs(choice))
            if reason := choice.get("finish_reason"):
                self.finish_reason = str(reason)
        return pieces

    def _on_delta(self, delta: dict[str, Any], pieces: list[Piece],
                  logprobs: tuple[dict[str, Any], ...] = ()) -> None:
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought and isinstance(thought, str):
            self.reasoning += thought
            pieces.append(Reasoning(thought))
        content = delta.get("content")
        if content:
            text = content if isinstance(content, str) else str(content)
            self.text += text
            pieces.append(Text(text, logprobs))
        calls = delta.get("tool_calls")
        if not calls and isinstance(delta.get("function_call"), dict):
            calls = [{"index": 0, "function": delta["function_call"]}]  # legacy only
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                self._on_call(call, pieces)

    def close(self) -> list[Piece]:
        """The answer ended: names still open are complete."""
        return self._name_all()

    def _on_call(self, chunk: dict[str, Any], pieces: list[Piece]) -> None:
        key = chunk.get("index")
        if not isinstance(key, int) or isinstance(key, bool):
            key = -1 - len(self.calls)  # no index: each piece a call of its own
        given_id = chunk.get("id")
        upstream_id = given_id if isinstance(given_id, str) else ""
        call = self._by_index.get(key)
        if call is None or (upstream_id and call.upstream_id
                            and upstream_id != call.upstream_id):
            pieces += self._name_all()  # a new call: the names before it are complete
            call = CallDraft(upstream_id=upstream_id)
            self.calls.append(call)
            self._by_index[key] = call
            pieces.append(CallOpened(call))
        elif upstream_id and not call.upstream_id:
            call.upstream_id = upstream_id
        fn = chunk.get("function") or {}
        name_piece = fn.get("name") if isinstance(fn, dict) else None
        arguments = fn.get("arguments") if isinstance(fn, dict) else None
        name_piece = name_piece if isinstance(name_piece, str) else ""
        arguments = arguments if isinstance(arguments, str) else ""
        before = call.name
        call.name = merge_name(call.name, name_piece)
        call.arguments += arguments
        if not call.named:
            if arguments:  # the arguments began: the name is complete
                call.named = True
                pieces.append(CallNamed(call))
            return
        grown = call.name[len(before):] if call.name.startswith(before) else ""
        if arguments or grown:
            pieces.append(CallPiece(call, arguments, grown))

    def _name_all(self) -> list[Piece]:
        named: list[Piece] = []
        for call in self.calls:
            if not call.named:
                call.named = True
                named.append(CallNamed(call))
        return named
