"""The run event stream's writes: from the publishing task while the response waits, in the
response's task once a write has to wait; in order either way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vtai.server.api.sse import EventStream, send_now
from vtai.server.runs.events import DONE, Event, EventBus
from vtai.server.store.db import Database


@pytest.fixture
def bus(tmp_path: Path) -> EventBus:
    return EventBus(Database(f"sqlite:///{tmp_path / 'vtai.db'}"))  # not started: no storing


async def test_send_now_runs_to_the_end_in_the_callers_turn() -> None:
    done = []

    async def quick() -> None:
        done.append(1)

    assert send_now(quick()) is None
    assert done == [1]


async def test_send_now_goes_on_in_a_task_after_a_wait() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps = []

    async def waits() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield too
        steps.append("after")

    task = send_now(waits())
    assert task is not None and steps == ["before"]
    gate.set_result("gate")
    await task
    assert steps == ["before", "gate", "after"]


async def test_send_now_failures_reach_the_coroutine_and_the_task() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = []

    async def fails() -> None:
        try:
            await gate
        except ValueError as err:
            seen.append(str(err))
            raise RuntimeError("then this") from err

    task = send_now(fails())
    assert task is not None
    gate.set_exception(ValueError("from the future"))
    with pytest.raises(RuntimeError, match="then this"):
        await task
    assert seen == ["from the future"]

    async def sleeps() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("ended")

    task = send_now(sleeps())
    assert task is not None
    await asyncio.sleep(0)  # the task has begun
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[-2:] == ["cancelled", "ended"]

    task = send_now(sleeps())
    assert task is not None
    task.cancel()  # before the task began: the coroutine is closed
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[-1] == "ended"


class _Client:
    """ASGI send and receive of a client that reads slowly when told to."""

    def __init__(self) -> None:
        self.body = b""
        self.sends: list[tuple[str | None, bytes]] = []  # (task name, body)
        self.slow = asyncio.Event()
        self.slow.set()
        self.ended = False
        self.leave = asyncio.Event()
        self.grew = asyncio.Event()  # set at each write of the body

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if not self.slow.is_set():
                await self.slow.wait()  # as uvicorn waits for its buffer to drain
            task = asyncio.current_task()
            self.sends.append((task.get_name() if task else None, message["body"]))
            self.body += message["body"]
            self.ended = not message["more_body"]
            self.grew.set()

    async def received(self, data: bytes) -> None:
        """Until ``data`` is in the body written so far."""
        while data not in self.body:
            self.grew.clear()
            await self.grew.wait()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}


def _events(body: bytes) -> list[str]:
    return [line.split(b": ", 1)[1].decode() for line in body.split(b"\n")
            if line.startswith(b"event: ")]


async def _respond(bus: EventBus, client: _Client, first: list[Event],
                   send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                   ) -> asyncio.Task[None]:
    """The response to ``client`` (written with ``send``, by default the client's), once it
    waits for the run's next event."""
    sub = bus.subscribe("run_1")
    response = EventStream(first, sub)
    task = asyncio.create_task(response({"type": "http"}, client.receive, send or client.send),
                               name="response")
    for _ in range(3):
        await asyncio.sleep(0)  # the response writes `first` and waits
    return task


def _delta(n: int) -> Event:
    return Event("thread.message.delta", f'{{"n":{n}}}')


async def test_events_are_written_by_the_publisher_while_the_response_waits(bus: EventBus) -> None:
    client = _Client()
    task = await _respond(bus, client, [Event.stamped("thread.run.created", "{}")])
    asyncio.current_task().set_name("run")  # type: ignore[union-attr]
    bus.publish("run_1", _delta(1))
    assert client.sends[-1][0] == "run"  # written before publish returned, by this task
    assert b'"n":1' in client.sends[-1][1]
    bus.publish("run_1", _delta(2))
    bus.publish("run_1", Event("thread.run.completed", "{}"))
    await asyncio.wait_for(task, 5)
    assert _events(client.body) == ["thread.run.created", "thread.message.delta",
                                    "thread.message.delta", "thread.run.completed", "done"]
    assert client.body.endswith(DONE) and client.ended
    assert [name for name, _ in client.sends[1:3]] == ["run", "run"]
    assert client.sends[-2][0] == "response"  # the end: written by the response's task
    assert not bus.has_subscribers("run_1")


async def test_a_slow_client_keeps_the_order_and_the_publisher_never_waits(bus: EventBus) -> None:
    client = _Client()
    task = await _respond(bus, client, [])
    client.slow.clear()
    bus.publish("run_1", _delta(1))  # its write has to wait: it goes on in a task
    for n in range(2, 6):
        bus.publish("run_1", _delta(n))  # queued behind it
    await asyncio.sleep(0.01)  # the condition tested: nothing is written meanwhile
    assert client.body == b""
    client.slow.set()
    await asyncio.wait_for(client.received(b'"n":5'), 5)  # the backlog is written
    bus.publish("run_1", _delta(6))
    bus.publish("run_1", Event("thread.run.completed", "{}"))
    await asyncio.wait_for(task, 5)
    numbers = [int(line.split(b'"n":')[1].rstrip(b"}")) for line in client.body.split(b"\n")
               if line.startswith(b'data: {"n":')]
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert _events(client.body)[-2:] == ["thread.run.completed", "done"]


async def test_the_client_leaving_ends_the_response(bus: EventBus) -> None:
    client = _Client()
    task = await _respond(bus, client, [])
    bus.publish("run_1", _delta(1))
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert not bus.has_subscribers("run_1")
    bus.publish("run_1", _delta(2))  # the run goes on; nobody listens
    assert b'"n":2' not in client.body


async def test_a_failed_write_ends_the_response_not_the_publisher(bus: EventBus) -> None:
    client = _Client()

    async def broken(message: dict[str, Any]) -> None:
        if b"delta" in message.get("body", b""):
            raise RuntimeError("write failed")
        await _Client.send(client, message)

    task = await _respond(bus, client, [], broken)
    bus.publish("run_1", _delta(1))  # no exception here
    with pytest.raises(RuntimeError, match="write failed"):
        await asyncio.wait_for(task, 5)
    assert not bus.has_subscribers("run_1")


async def test_send_now_passes_a_cancellation_on_even_once_the_future_is_done() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = []

    async def waits() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("went on")

    task = send_now(waits())
    assert task is not None
    await asyncio.sleep(0)  # the task waits for the gate
    gate.set_result(None)
    task.cancel()  # before the task's next step: as a task would, the coroutine is told
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_a_write_failing_after_a_wait_ends_the_response(bus: EventBus) -> None:
    client = _Client()

    async def fails_after_waiting(message: dict[str, Any]) -> None:
        if b"delta" in message.get("body", b""):
            await client.slow.wait()
            raise RuntimeError("write failed late")
        await _Client.send(client, message)

    client.slow.clear()
    task = await _respond(bus, client, [], fails_after_waiting)
    bus.publish("run_1", _delta(1))  # its write waits, then fails
    client.slow.set()
    with pytest.raises(RuntimeError, match="write failed late"):
        await asyncio.wait_for(task, 5)  # without another event to wake it
    assert not bus.has_subscribers("run_1")
