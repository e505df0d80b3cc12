"""Limits at the edge: body sizes, NUL characters in URLs, and each key's request rate.

Each answers in OpenAI's error shape: 400 for a NUL in a URL, 413 for a body too large to
read, 429 (with ``retry-after``) for too many requests.
"""

from __future__ import annotations

import math
import re
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vtai.server.api.errors import APIError, bad_request, error_response


class BodyTooLarge(HTTPException):
    # An HTTPException passes through FastAPI's body parsing to the error handlers.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large: the limit is {limit} bytes.")


class BodyLimit:
    """Request bodies are cut off past a limit: ``limit``, or ``paths[pattern]`` for paths
    matching a pattern (a regular expression of the whole path), such as file uploads that
    take more. Chunked bodies are counted as they arrive."""

    def __init__(self, app: ASGIApp, limit: int, paths: dict[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.paths = [(re.compile(pattern), size) for pattern, size in paths.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((size for pattern, size in self.paths
                      if pattern.fullmatch(scope["path"])), self.limit)
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
