"""A run's stream of events, as snapshots that outlive any one connection.

The server names each event of a run's stream with an SSE ``id``; :class:`EventStream` keeps
the last one read, so a stream cut short (the server restarted, a proxy closed it) is resumed
from there with the server's ``GET /threads/{thread_id}/runs/{run_id}/events`` and
``Last-Event-ID``. :class:`Snapshots` adds up message and step deltas outside the stream, so a
resumed stream's deltas add to what was already shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from openai import AsyncStream
from openai.lib.streaming._assistants import accumulate_event, accumulate_run_step
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Message, MessageDeltaEvent
from openai.types.beta.threads.runs import RunStep, RunStepDeltaEvent

# What a lost connection looks like: the SDK wraps some (opening a request), httpx raises
# others itself (a body cut mid-stream, depending on the SDK's version).
CONNECTION_ERRORS = (openai.APIConnectionError, httpx.TransportError)
BETA_HEADER = {"OpenAI-Beta": "assistants=v2"}


class EventStream(AsyncStream[AssistantStreamEvent]):
    """The SDK's stream of assistant events, keeping the id of the last event read."""

    last_event_id: str | None = None

    async def _iter_events(self) -> AsyncIterator[Any]:
        async for sse in super()._iter_events():
            if sse.id:
                self.last_event_id = sse.id
            yield sse


class Snapshots:
    """The latest state of each message and step of the streamed runs, from their events."""

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self.steps: dict[str, RunStep] = {}

    def message(self, event: AssistantStreamEvent) -> Message | None:
        """The message the event is about, with the event applied (None: a delta of a
        message whose start was never seen)."""
        data = event.data
        if isinstance(data, MessageDeltaEvent):
            snapshot = self.messages.get(data.id)
            if snapshot is not None:
                accumulate_event(event=event, current_message_snapshot=snapshot)
            return snapshot
        if not isinstance(data, Message):
            return None
        self.messages[data.id] = data
        return data

    def step(self, event: AssistantStreamEvent) -> RunStep | None:
        data = event.data
        if isinstance(data, RunStepDeltaEvent):
            if data.id not in self.steps:
                return None
            accumulate_run_step(event=event, run_step_snapshots=self.steps)
        elif isinstance(data, RunStep):
            self.steps[data.id] = data
        else:
            return None
        return self.steps[data.id]

    def clear(self) -> None:
        self.messages.clear()
        self.steps.clear()


def lost_connection(err: BaseException) -> str:
    """What a user reads about a lost connection (no exception's repr)."""
    if isinstance(err, openai.APITimeoutError | httpx.TimeoutException):
        return "the server stopped answering"
    if isinstance(err, httpx.RemoteProtocolError) or "peer closed" in str(err.__cause__ or ""):
        return "the server closed the connection mid-answer"
    return "cannot reach the server"
