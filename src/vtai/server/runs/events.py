"""The event bus: every state change of a run is published here, and SSE streams subscribe.

In one process this is a set of queues per run. Events carry the object's JSON as sent on the
wire, so a stream writes them without re-encoding.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from vtai.server.runs import states


@dataclass(frozen=True)
class Event:
    event: str
    data: str  # JSON

    @classmethod
    def of(cls, event: str, obj: Any) -> Event:
        return cls(event, obj if isinstance(obj, str) else orjson.dumps(obj).decode())

    def encode(self) -> bytes:
        return f"event: {self.event}\ndata: {self.data}\n\n".encode()

    @property
    def ends_stream(self) -> bool:
        if self.event == "error":
            return True
        prefix = "thread.run."
        if not self.event.startswith(prefix):
            return False
        status = self.event[len(prefix):]
        # A failed run is followed by an `error` event, which ends the stream.
        return status in states.PAUSING and status != states.FAILED


DONE = b"event: done\ndata: [DONE]\n\n"


class Subscription:
    def __init__(self, bus: EventBus, run_id: str) -> None:
        self.bus = bus
        self.run_id = run_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def events(self) -> AsyncIterator[Event]:
        """Events until the run finishes or waits for tool outputs."""
        try:
            while True:
                event = await self.queue.get()
                yield event
                if event.ends_stream:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self.bus._subscribers[self.run_id].discard(self)
        if not self.bus._subscribers[self.run_id]:
            del self.bus._subscribers[self.run_id]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(self, run_id)
        self._subscribers[run_id].add(sub)
        return sub

    def publish(self, run_id: str, event: Event) -> None:
        for sub in self._subscribers.get(run_id, ()):
            sub.queue.put_nowait(event)


async def sse_body(first: list[Event], sub: Subscription) -> AsyncIterator[bytes]:
    """An SSE response body: the given events, then the run's, then ``done``."""
    for event in first:
        yield event.encode()
        if event.ends_stream:
            sub.close()
            yield DONE
            return
    async for event in sub.events():
        yield event.encode()
    yield DONE
