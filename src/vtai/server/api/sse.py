"""The SSE response of a run's events, written as they are published.

While the response waits for the run's next event, an event published by the run's task is
written to the client from that task, at once: the response's own task would start only at a
later turn of the event loop, which under load is a millisecond or more behind. Only when a
write has to wait (the client reads slower than the run writes), or the stream ends, does the
response's task take over, and events wait their turn in the subscription's queue.

The write runs as the publisher: its first steps in the publisher's task, the rest in a task
that copies the publisher's context. Nothing on the send path (uvicorn's send and the
Starlette and FastAPI middlewares' wrappers of it) uses the current task, a timeout or a
cancel scope; a middleware whose send does would tie them to the run's task instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from vtai.server.runs.events import DONE, Event, Subscription


def send_now(awaitable: Awaitable[None]) -> asyncio.Future[None] | None:
    """Run a coroutine here, in the caller's turn of the event loop. None if it ran to its
    end; if it had to wait, the task in which the rest of it runs. (Another awaitable is
    simply awaited in a task.)"""
    if not isinstance(awaitable, Coroutine):
        return asyncio.ensure_future(awaitable)
    coro = awaitable
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.get_running_loop().create_task(_go_on(coro, waiting_for))
    task.add_done_callback(lambda _: coro.close())  # cancelled before it began: ends too
    return task


async def _go_on(coro: Coroutine[Any, Any, None], waiting_for: Any) -> None:
    """The rest of ``coro``, which waits for ``waiting_for`` (a future, or None for a bare
    yield to the event loop), as a task would run it."""
    while True:
        try:
            if waiting_for is None:
                await asyncio.sleep(0)
            else:
                # Taken over from the coroutine, as a task does with what a coroutine yields.
                waiting_for._asyncio_future_blocking = False
                await waiting_for
        except BaseException as err:
            if not _raised_by(waiting_for, err):
                # This task was interrupted, not the future: tell the coroutine.
                try:
                    waiting_for = coro.throw(err)
                except StopIteration:
                    return
                continue
            # The future failed: the coroutine reads that from it when it goes on.
        try:
            waiting_for = coro.send(None)
        except StopIteration:
            return


def _raised_by(future: Any, err: BaseException) -> bool:
    """Whether ``err`` is ``future``'s own outcome (not an interruption of its waiter)."""
    if future is None or not future.done():
        return False
    if future.cancelled():
        return isinstance(err, asyncio.CancelledError)
    return bool(future.exception() is err)


def _body(data: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


class EventStream(Response):
    """SSE of ``first`` (events already known), then, when ``live``, the run's next events
    from ``sub`` until the run finishes or pauses, then ``done``. ``rewrite`` changes events
    on their way out. The client leaving ends the response (not the run)."""

    media_type = "text/event-stream"

    def __init__(self, first: list[Event], sub: Subscription, live: bool = True,
                 rewrite: Callable[[Event], Event] | None = None, done: bytes = DONE) -> None:
        self.status_code = 200
        self.background = None
        # No keep-alive comments: after an event with an id, the SDK's decoder turns the
        # blank line ending a comment into an empty event and fails to parse it.
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.first = first
        self.sub = sub
        self.live = live
        self.rewrite = rewrite
        self.done = done  # the stream's last words (a response's stream has none)

    def _encode(self, events: list[Event]) -> bytes:
        if self.rewrite is not None:
            events = [self.rewrite(event) for event in events]
        return b"".join(event.encode() for event in events)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first, live = self.first, self.live
        for index, event in enumerate(first):
            if event.ends_stream:
                first, live = first[:index + 1], False
                break
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if first:
                await send(_body(self._encode(first)))
            ended = live and await self._live(receive, send)
            await send(_body(b"" if ended else self.done, more=False))
        finally:
            self.sub.close()

    async def _live(self, receive: Receive, send: Send) -> bool:
        """The run's events until one ends the stream (True: it was written, with ``done``),
        or the client leaves (False)."""
        sub = self.sub
        parked = False  # this task waits for the next event, with nothing queued or sending
        sending: asyncio.Future[None] | None = None  # a write from the run's task that waits
        failed: list[BaseException] = []

        def fail(err: BaseException) -> None:
            """A write failed: kept for this task, which ends the response (the run goes on)."""
            failed.append(err)
            sub.interrupt()

        def write_now(event: Event) -> bool:
            nonlocal sending
            if not parked or sending is not None or event.ends_stream or failed \
                    or not sub.queue.empty():
                return False
            try:
                sending = send_now(send(_body(self._encode([event]))))
            except (Exception, asyncio.CancelledError) as err:
                fail(err)
                return True
            if sending is not None:
                sending.add_done_callback(
                    lambda done: None if done.cancelled() or done.exception() is None
                    else fail(done.exception()))  # type: ignore[arg-type]
            return True

        left = asyncio.ensure_future(_client_leaves(receive))
        left.add_done_callback(lambda _: sub.interrupt())
        sub.writer = write_now
        try:
            while True:
                parked = True
                batch = await sub.next_batch()
                parked = False
                if failed:
                    raise failed[0]
                if not batch:  # interrupted: the client left
                    return False
                if sending is not None:
                    await sending  # written first: it came first
                    sending = None
                ended = batch[-1].ends_stream
                await send(_body(self._encode(batch) + (self.done if ended else b"")))
                if ended:
                    return True
        finally:
            sub.writer = None
            left.cancel()
            if sending is not None:  # ended by the client leaving or a failure: not needed
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending  # (and a failure of it is not left unread)


async def _client_leaves(receive: Receive) -> None:
    with contextlib.suppress(Exception):  # the connection is unusable: as good as gone
        while (await receive())["type"] != "http.disconnect":
            pass
