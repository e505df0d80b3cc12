"""Limits on what one request may hold (OpenAI's where it has one), and on a project's active
runs."""

from __future__ import annotations

import time
from typing import Any

import orjson

from vtai.server.errors import TooMany, bad_request
from vtai.server.settings import Settings


def check_message_size(content: Any, attachments: list[Any] | None, settings: Settings,
                       param: str = "content") -> None:
    """Text length, number of content parts and of attachments of one message."""
    if isinstance(content, str):
        chars = len(content)
    else:
        if len(content) > settings.max_content_parts:
            raise bad_request(f"Invalid '{param}': at most {settings.max_content_parts} "
                              f"content parts, got {len(content)}.", param)
        chars = sum(len(part.text) for part in content if getattr(part, "type", "") == "text")
    if chars > settings.max_message_chars:
        raise bad_request(f"Invalid '{param}': string too long. Expected at most "
                          f"{settings.max_message_chars} characters, got {chars}.", param)
    if attachments and len(attachments) > settings.max_attachments:
        raise bad_request(f"Invalid 'attachments': at most {settings.max_attachments} "
                          f"attachments, got {len(attachments)}.", "attachments")


def check_tools_size(tools: list[Any] | None, settings: Settings, param: str = "tools") -> None:
    """A function tool's parameters schema is bounded in size."""
    for index, tool in enumerate(tools or []):
        parameters = getattr(getattr(tool, "function", None), "parameters", None)
        if parameters is None:
            continue
        size = len(orjson.dumps(parameters))
        if size > settings.max_function_parameters_bytes:
            raise bad_request(
                f"Invalid '{param}[{index}].function.parameters': the schema is {size} bytes; "
                f"the limit is {settings.max_function_parameters_bytes}.",
                f"{param}[{index}].function.parameters")


class ActiveRunLimit:
    """The limit on a project's active runs (``limit``; 0: none), checked at each run's start
    against the count the start's query makes. That count is skipped while the last one, made
    less than ``max_age`` seconds ago, plus the runs this process started since, stays under
    ``NEAR`` of the limit: counting scans the runs table, and far from the limit it tells
    nothing. Runs started by other processes are seen within ``max_age``: the limit is a
    ceiling against runaway clients, not an exact quota."""

    NEAR = 0.8
    MAX_PROJECTS = 10_000  # projects remembered; past that, all are forgotten

    def __init__(self, limit: int, max_age: float = 1.0) -> None:
        self.limit = limit
        self.max_age = max_age
        self._seen: dict[str, list[float]] = {}  # project -> [counted at, count + started]

    def to_count(self, project: str) -> int:
        """How far the start's query should count the project's active runs: 0 (not at all)
        or the limit."""
        seen = self._seen.get(project)
        if not self.limit or (seen is not None and time.monotonic() - seen[0] < self.max_age
                              and seen[1] < self.limit * self.NEAR):
            return 0
        return self.limit

    def check(self, project: str, counted: int | None) -> None:
        """TooMany (429) if the project is at its limit (``counted``: what the start's query
        counted, None if it did not count); otherwise the run is taken as started."""
        if counted is not None:
            if len(self._seen) >= self.MAX_PROJECTS:
                self._seen.clear()
            self._seen[project] = [time.monotonic(), float(counted)]
            if counted >= self.limit:
                raise TooMany(f"Too many active runs: this project has {counted}, the "
                              f"limit is {self.limit}.", code="rate_limit_exceeded",
                              retry_after=1)
        if project in self._seen:
            self._seen[project][1] += 1
