"""A response's output as it is made, item by item, with the stream events OpenAI sends for
each step (``ResponseStreamEvent``), numbered by ``sequence_number``.

One ``ResponseOutput`` per attempt at a response: it holds the output items so far and
publishes each event as it happens. Which item is open is its own business: text opens a
message, a call closes it, the end closes whatever is open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtai.server.runs.items import new_item_id

Publish = Callable[[str, dict[str, Any]], None]


@dataclass
class _Open:
    index: int
    item: dict[str, Any]
    text: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's token logprob as the Responses API's."""
    def one(value: dict[str, Any]) -> dict[str, Any]:
        return {"token": str(value.get("token") or ""), "logprob": float(value.get("logprob")
                                                                         or 0.0),
                "bytes": list(value.get("bytes") or [])}
    return {**one(entry), "top_logprobs": [one(t) for t in entry.get("top_logprobs") or ()]}


class ResponseOutput:
    def __init__(self, publish: Publish, next_sequence: int) -> None:
        self._publish = publish
        self.sequence = next_sequence
        self.items: list[dict[str, Any]] = []
        self._message: _Open | None = None
        self._reasoning: _Open | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        self._publish(kind, {"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1

    def _add(self, item: dict[str, Any]) -> int:
        self.items.append(item)
        index = len(self.items) - 1
        self.emit("response.output_item.added", output_index=index, item=item)
        return index

    def _done(self, index: int) -> None:
        self.emit("response.output_item.done", output_index=index, item=self.items[index])

    # ------------------------------------------------------------------- text

    @property
    def message_open(self) -> bool:
        return self._message is not None

    @property
    def open_text(self) -> str:
        """The open message's text so far."""
        return self._message.text if self._message is not None else ""

    def text(self, delta: str, logprobs: tuple[dict[str, Any], ...] = ()) -> None:
        self.close_reasoning()
        if self._message is None:
            item = {"id": new_item_id("message"), "type": "message", "role": "assistant",
                    "status": "in_progress", "content": []}
            self._message = _Open(self._add(item), item)
            self.emit("response.content_part.added", item_id=item["id"],
                      output_index=self._message.index, content_index=0,
                      part={"type": "output_text", "text": "", "annotations": [],
                            "logprobs": []})
        opened = self._message
        opened.text += delta
        pieces = [_logprob(entry) for entry in logprobs]
        opened.logprobs += pieces
        self.emit("response.output_text.delta", item_id=opened.item["id"],
                  output_index=opened.index, content_index=0, delta=delta, logprobs=pieces)

    def close_message(self, status: str = "completed",
                      annotations: list[dict[str, Any]] | None = None) -> None:
        """The open message ends with ``annotations`` (each announced first)."""
        opened, self._message = self._message, None
        if opened is None:
            return
        item_id, index = opened.item["id"], opened.index
        notes = annotations or []
        for number, note in enumerate(notes):
            self.emit("response.output_text.annotation.added", item_id=item_id,
                      output_index=index, content_index=0, annotation_index=number,
                      annotation=note)
        part = {"type": "output_text", "text": opened.text, "annotations": notes,
                "logprobs": opened.logprobs}
        self.emit("response.output_text.done", item_id=item_id, output_index=index,
                  content_index=0, text=opened.text, logprobs=opened.logprobs)
        self.emit("response.content_part.done", item_id=item_id, output_index=index,
                  content_index=0, part=part)
        opened.item.update(status=status, content=[part])
        self._done(index)

    # -------------------------------------------------------------- reasoning

    def reasoning(self, delta: str) -> None:
        if self._reasoning is None:
            item = {"id": new_item_id("reasoning"), "type": "reasoning", "summary": [],
                    "content": [], "status": "in_progress"}
            self._reasoning = _Open(self._add(item), item)
            self.emit("response.content_part.added", item_id=item["id"],
                      output_index=self._reasoning.index, content_index=0,
                      part={"type": "reasoning_text", "text": ""})
        opened = self._reasoning
        opened.text += delta
        self.emit("response.reasoning_text.delta", item_id=opened.item["id"],
                  output_index=opened.index, content_index=0, delta=delta)

    def close_reasoning(self) -> None:
        opened, self._reasoning = self._reasoning, None
        if opened is None:
            return
        part = {"type": "reasoning_text", "text": opened.text}
        self.emit("response.reasoning_text.done", item_id=opened.item["id"],
                  output_index=opened.index, content_index=0, text=opened.text)
        self.emit("response.content_part.done", item_id=opened.item["id"],
                  output_index=opened.index, content_index=0, part=part)
        opened.item.update(status="completed", content=[part])
        self._done(opened.index)

    def close_all(self, status: str = "completed") -> None:
        self.close_reasoning()
        self.close_message(status)

    # --------------------------------------------------------- function calls

    def open_function(self, call_id: str, name: str) -> int:
        self.close_all()
        return self._add({"id": new_item_id("function_call"), "type": "function_call",
                          "status": "in_progress", "call_id": call_id, "name": name,
                          "arguments": ""})

    def function_arguments(self, index: int, delta: str) -> None:
        item = self.items[index]
        item["arguments"] += delta
        self.emit("response.function_call_arguments.delta", item_id=item["id"],
                  output_index=index, delta=delta)

    def close_function(self, index: int, status: str = "completed") -> None:
        item = self.items[index]
        self.emit("response.function_call_arguments.done", item_id=item["id"],
                  output_index=index, name=item["name"], arguments=item["arguments"])
        item["status"] = status
        self._done(index)

    # ------------------------------------------------------- built-in tools

    def open_tool(self, item: dict[str, Any]) -> int:
        """A built-in tool's call begins (``item`` in its first shape): announced, then
        ``in_progress``; a code interpreter's call streams its code."""
        self.close_all()
        index = self._add(item)
        kind = item["type"]
        self.emit(f"response.{kind}.in_progress", item_id=item["id"], output_index=index)
        if kind == "code_interpreter_call":
            code = item.get("code") or ""
            self.emit("response.code_interpreter_call_code.delta", item_id=item["id"],
                      output_index=index, delta=code)
            self.emit("response.code_interpreter_call_code.done", item_id=item["id"],
                      output_index=index, code=code)
            self.emit("response.code_interpreter_call.interpreting", item_id=item["id"],
                      output_index=index)
        else:
            self.emit("response.file_search_call.searching", item_id=item["id"],
                      output_index=index)
        return index

    def close_tool(self, index: int, item: dict[str, Any]) -> None:
        self.items[index] = item
        self.emit(f"response.{item['type']}.completed", item_id=item["id"],
                  output_index=index)
        self._done(index)
