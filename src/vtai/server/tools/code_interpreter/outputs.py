"""A call's ``outputs`` in OpenAI's shape, streamed as step deltas while they are made:
one ``logs`` output (stdout, stderr, results and tracebacks, in order, up to a size) and an
``image`` output per displayed image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CallOutputs:
    def __init__(self, emit: Callable[[dict[str, Any]], None], max_chars: int) -> None:
        self.emit = emit
        self.max_chars = max_chars
        self.items: list[dict[str, Any]] = []
        self._logs: dict[str, Any] | None = None
        self._kept = 0
        self._dropped = 0

    def text(self, text: str) -> None:
        """Printed text: kept up to the size limit, then counted."""
        room = self.max_chars - self._kept
        kept = text[:max(room, 0)]
        self._dropped += len(text) - len(kept)
        self._kept += len(kept)
        self._append_logs(kept)

    def note(self, text: str) -> None:
        """Text that is always kept: tracebacks and what the server has to say."""
        if self._dropped:
            self._append_logs(f"\n[... {self._dropped} more characters of output not "
                              "shown ...]\n")
            self._dropped = 0
        self._append_logs(text)

    def image(self, file_id: str) -> None:
        item = {"type": "image", "image": {"file_id": file_id}}
        self.items.append(item)
        self._send(len(self.items) - 1, item)

    def finish(self) -> list[dict[str, Any]]:
        self.note("")
        return self.items

    def _append_logs(self, text: str) -> None:
        if not text:
            return
        if self._logs is None:
            self._logs = {"type": "logs", "logs": ""}
            self.items.append(self._logs)
        self._logs["logs"] += text
        self._send(self.items.index(self._logs), {"type": "logs", "logs": text})

    def _send(self, index: int, item: dict[str, Any]) -> None:
        self.emit({"code_interpreter": {"outputs": [{"index": index, **item}]}})


def model_text(outputs: list[dict[str, Any]]) -> str:
    """What the model reads as the call's result."""
    parts = []
    for item in outputs:
        if item["type"] == "logs":
            parts.append(item["logs"])
        elif item["type"] == "image":
            parts.append(f"[image {item['image']['file_id']} displayed to the user]\n")
    return "".join(parts).strip() or "(no output)"
