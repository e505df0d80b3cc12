"""One model request of a turn: sent at once, read by the turn, given up if it is not read;
and the run failure an upstream's error becomes."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import openai

from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.routing import OpenAnswer, Route
from vtai.server.runs.tokens import Count, estimate


class RunFailure(Exception):
    """The run fails with this ``last_error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _start_now(coro: Coroutine[Any, Any, OpenAnswer]) -> asyncio.Task[OpenAnswer]:
    """A task for a model request. From Python 3.12 it starts at once and runs up to its wait
    for the answer, aiohttp writing the request on the way (eagerly too), so the request is
    on the wire when ModelCall.send returns; before 3.12 it starts at the event loop's next
    turn (see let_request_leave). Under load every turn waits behind all that is ready, a
    millisecond or more with a few hundred streams."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.ensure_future(coro)


async def let_request_leave() -> None:
    """Before Python 3.12, two turns of the event loop, so that a request just started
    (ModelCall.send) leaves now, not when its sender next waits (on SQLite, storing a run
    never does): the first runs the request's task up to its wait for the answer, the second
    the task in which aiohttp writes the body. From 3.12 the request has left already."""
    if sys.version_info >= (3, 12):
        return
    for _ in range(2):
        await asyncio.sleep(0)


@dataclass
class ModelCall:
    """A model request ready to go, or already sent (``opening``)."""

    route: Route
    params: dict[str, Any]
    prompt_tokens: int
    count: Count = estimate  # the model's tokens in a text (see runs.tokens)
    opening: asyncio.Future[OpenAnswer] | None = None
    started: float = field(default_factory=time.monotonic)

    def send(self) -> asyncio.Future[OpenAnswer]:
        """Start the request (see _start_now)."""
        self.opening = _start_now(self.route.open_chat(self.params))
        return self.opening

    def release(self) -> None:
        """Give up a request that was sent and will not be read."""
        opening, self.opening = self.opening, None
        if opening is None:
            return
        if not opening.done():
            opening.cancel()
        elif not opening.cancelled() and opening.exception() is None:
            opening.result().release()


def failure_from_upstream(err: UpstreamError | openai.APIError, provider: str) -> RunFailure:
    """The run's failure for an error of the provider named ``provider``: from ChatStreams
    (UpstreamError) or an SDK client (LiteLLM's, whose errors are openai's)."""
    status = err.status if isinstance(err, UpstreamError) else \
        err.status_code if isinstance(err, openai.APIStatusError) else None
    who = f"The model provider '{provider}'"
    if status == 429:
        return RunFailure("rate_limit_exceeded", f"{who} is rate limiting: {err}")
    if status == 400:
        return RunFailure("invalid_prompt", f"{who} rejected the request: {err}")
    if isinstance(err, UpstreamError) and err.empty:
        return RunFailure("server_error", f"{who} sent nothing: {err}")
    if isinstance(err, openai.APIConnectionError) or (
            isinstance(err, UpstreamError) and err.unreachable):
        return RunFailure("server_error", f"{who} could not be reached: {err}")
    return RunFailure("server_error", f"{who} failed: {err}")
