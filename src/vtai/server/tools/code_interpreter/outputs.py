"""A call's ``outputs`` in OpenAI's shape, streamed as step deltas while they are made:
one ``logs`` output (stdout, stderr, results and tracebacks, in order, up to a size) and an
``image`` output per displayed image.

Everything in the logs is bounded, since they are stored with the step and sent to the model
on every later turn: the code's output (printed text and tracebacks) to ``max_chars``, a
traceback after long output to a floor of its own, and the server's notes to ``NOTES_ROOM``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A traceback keeps at least this much (at most half of max_chars) even when printed output
# used up max_chars before it: the model needs the error to fix its code.
TRACEBACK_FLOOR = 2_000
# The server's notes in one call (limits hit, files and images left out, cut output).
NOTES_ROOM = 4_000
ALLOWANCE = TRACEBACK_FLOOR + NOTES_ROOM  # a call's logs hold at most max_chars + this


def shorten(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and its tail around a
    line saying how many characters were cut from the middle, ``limit`` characters in all."""
    if len(text) <= limit:
        return text
    # The count in the line is at most len(text): a line sized for it always fits.
    keep = limit - len(_cut_line(len(text)))
    if keep <= 0:
        return text[:max(limit, 0)]  # no room to say it: a few characters of the head
    head = keep - keep // 2
    return text[:head] + _cut_line(len(text) - keep) + text[len(text) - keep // 2:]


def _cut_line(count: int) -> str:
    return f"\n[... {count} characters cut ...]\n"


class CallOutputs:
    def __init__(self, emit: Callable[[dict[str, Any]], None], max_chars: int) -> None:
        self.emit = emit
        self.max_chars = max_chars
        self.limit = max_chars + ALLOWANCE  # the logs never hold more
        self.items: list[dict[str, Any]] = []
        self._logs: dict[str, Any] | None = None
        self._output = 0  # characters of the code's output kept: text and tracebacks
        self._noted = 0  # characters of the server's notes kept
        self._dropped = 0  # characters of output left out since the last thing kept

    def text(self, text: str) -> None:
        """Printed text: kept up to max_chars, then counted."""
        kept = text[:max(self.max_chars - self._output, 0)]
        self._dropped += len(text) - len(kept)
        self._keep_output(kept)

    def traceback(self, text: str) -> None:
        """A traceback: what is left of max_chars, or at least the floor (once in all, so
        that a kernel sending error after error stays bounded); a longer one keeps its head
        (where the code failed) and its tail (the error)."""
        floor = min(TRACEBACK_FLOOR, self.max_chars // 2)
        room = min(max(self.max_chars - self._output, floor),
                   self.max_chars + floor - self._output)
        if room <= 0:
            self._dropped += len(text)
            return
        self._flush_dropped()
        self._keep_output(shorten(text, room))

    def note(self, text: str) -> None:
        """What the server has to say, kept up to NOTES_ROOM in all (its notes are short,
        but some name files that the code named)."""
        self._flush_dropped()
        self._keep_note(text)

    def image(self, file_id: str) -> None:
        item = {"type": "image", "image": {"file_id": file_id}}
        self.items.append(item)
        self._send(len(self.items) - 1, item)

    def finish(self) -> list[dict[str, Any]]:
        self._flush_dropped()
        return self.items

    def _flush_dropped(self) -> None:
        if self._dropped:
            self._keep_note(f"\n[... {self._dropped} more characters of output not "
                            "shown ...]\n")
            self._dropped = 0

    def _keep_output(self, text: str) -> None:
        self._output += len(text)
        self._append_logs(text)

    def _keep_note(self, text: str) -> None:
        kept = text[:max(NOTES_ROOM - self._noted, 0)]
        self._noted += len(kept)
        self._append_logs(kept)

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


def model_text(outputs: list[dict[str, Any]], limit: int) -> str:
    """What the model reads as the call's result: the logs (cut to ``limit`` characters,
    for calls stored before their logs were bounded) and a line per image."""
    parts = []
    for item in outputs:
        if item["type"] == "logs":
            parts.append(shorten(item["logs"], limit))
        elif item["type"] == "image":
            parts.append(f"[image {item['image']['file_id']} displayed to the user]\n")
    return "".join(parts).strip() or "(no output)"
