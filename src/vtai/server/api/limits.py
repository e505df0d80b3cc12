"""Request limits: body sizes, message sizes, tool schema sizes, active runs and request rate.

Each answers in OpenAI's error shape: 400 for a request over a size limit, 413 for a body too
large to read, 429 (with ``retry-after``) for too many requests or active runs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vtai.server.api.errors import APIError, bad_request, error_response
from vtai.server.settings import Settings


class BodyTooLarge(HTTPException):
    # An HTTPException passes through FastAPI's body parsing to the error handlers.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large: the limit is {limit} bytes.")


class BodyLimit:
    """Request bodies are cut off past a limit: ``limit``, or ``paths[path]`` for paths
    such as file uploads that take more. Chunked bodies are counted as they arrive."""

    def __init__(self, app: ASGIApp, limit: int, paths: dict[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.limit)
        declared = Headers(scope=scope).get("content-length")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


class NoNulInUrl:
    """A NUL character in a path or query value is refused: no id or cursor holds one, and
    PostgreSQL cannot take one in a query parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
                "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")):
            response = error_response(bad_request(
                "Invalid URL: path and query values must not contain NUL characters."))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests a minute, in bursts up to that."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def check(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, updated = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - updated) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            retry_after = math.ceil((1.0 - tokens) / rate)
            raise APIError(
                429, f"Rate limit reached: {self.per_minute} requests per minute. Try again "
                f"in {retry_after} s.", type="requests", code="rate_limit_exceeded",
                headers={"retry-after": str(retry_after)})
        self._buckets[key] = (tokens - 1.0, now)


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
        """429 if the project is at its limit (``counted``: what the start's query counted,
        None if it did not count); otherwise the run is taken as started."""
        if counted is not None:
            if len(self._seen) >= self.MAX_PROJECTS:
                self._seen.clear()
            self._seen[project] = [time.monotonic(), float(counted)]
            if counted >= self.limit:
                raise APIError(429, f"Too many active runs: this project has {counted}, the "
                               f"limit is {self.limit}.", type="requests",
                               code="rate_limit_exceeded", headers={"retry-after": "1"})
        if project in self._seen:
            self._seen[project][1] += 1


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
