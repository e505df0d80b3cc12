"""Citation markers: how the model is shown search results and how the answer it writes is
turned into ``file_citation`` annotations.

Results read ``【call:index†file name】`` like OpenAI's. ``call`` is a number drawn from the
call's id, so the marker of a result can be rebuilt from the stored call alone (the model's
history is replayed from stored steps); a marker whose numbers no longer match is resolved
by its file name among the calls since the previous message.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")


def call_number(call_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=4).digest(),
                          "big") % 1000


def marker(call_id: str, index: int, file_name: str) -> str:
    return f"【{call_number(call_id)}:{index}†{file_name}】"


def _results(call: dict[str, Any]) -> list[dict[str, Any]]:
    return list((call.get("file_search") or {}).get("results") or [])


def _resolve(number: int, index: int, name: str, calls: list[dict[str, Any]]) -> str | None:
    for call in reversed(calls):
        results = _results(call)
        if call_number(call["id"]) == number and index < len(results):
            return str(results[index]["file_id"])
    for call in reversed(calls):
        for result in _results(call):
            if result.get("file_name") == name:
                return str(result["file_id"])
    return None


def find_annotations(text: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for match in MARKER.finditer(text):
        file_id = _resolve(int(match[1]), int(match[2]), match[3], calls)
        if file_id is not None:
            found.append({"type": "file_citation", "text": match[0],
                          "start_index": match.start(), "end_index": match.end(),
                          "file_citation": {"file_id": file_id}})
    return found
