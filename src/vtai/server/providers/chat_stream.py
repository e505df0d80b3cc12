"""Streamed chat completions from an OpenAI-compatible upstream (see upstream.py), read with
aiohttp.

Every token of a run's answer comes through here, so this path is kept lean: aiohttp's HTTP
parser (in C) and a small SSE reader spend about a quarter of the CPU per chunk that the openai
SDK's httpx stack does (see docs/benchmarks.md). It behaves as the SDK does for the same request:

- retries: connection errors, timeouts, 408, 409, 429 and 5xx answers are retried up to
  ``max_retries`` times, after the upstream's ``retry-after-ms``/``retry-after`` when it gives
  one (up to a minute), else 0.5 s doubling up to 8 s, less up to a quarter of jitter;
  ``x-should-retry`` overrides the choice;
- timeouts: ``timeout`` seconds to connect and between two reads of the stream;
- proxies: the environment's (``HTTPS_PROXY``, ``NO_PROXY``, ...), as the SDK's httpx uses;
- errors: an error answer, or an error sent inside the stream (a ``data`` object with an
  ``error``, or an ``error`` event), raises ``UpstreamError``, as the SDK raises ``APIError``.

An upstream that ignores ``stream`` and answers one JSON completion is read as one chunk.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.metadata
import random
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import aiohttp
import orjson

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
CONNECTIONS = 1000  # open to one upstream at once, as the SDK's default pool
USER_AGENT = f"vtai/{importlib.metadata.version('vtai-assistants')}"


class UpstreamError(Exception):
    """The upstream failed: ``status`` is its HTTP status, None when no answer came (a
    connection error, a timeout, a broken stream)."""

    def __init__(self, message: str, status: int | None = None,
                 broke_off: bool = False, unreachable: bool = False,
                 empty: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.broke_off = broke_off  # its headers came, then its stream broke off
        self.unreachable = unreachable  # no connection, or no answer in time
        self.empty = empty  # an answer that ended without saying anything


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY, NO_PROXY, ...), looked up
    once: aiohttp's ``trust_env`` would read the environment and ~/.netrc on every request."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def should_retry(response: aiohttp.ClientResponse) -> bool:
    forced = response.headers.get("x-should-retry")
    if forced in ("true", "false"):
        return forced == "true"
    return response.status in (408, 409, 429) or response.status >= 500


def retry_after(headers: Any) -> float | None:
    """The wait the upstream asked for, in seconds, when it is a sensible one."""
    seconds: float | None = None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            seconds = float(ms) / 1000
        elif (value := headers.get("retry-after")) is not None:
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                seconds = when.timestamp() - time.time()
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and 0 < seconds <= MAX_RETRY_AFTER else None


def retry_delay(retries_done: int, headers: Any = None) -> float:
    asked = retry_after(headers) if headers is not None else None
    if asked is not None:
        return asked
    delay = min(INITIAL_RETRY_DELAY * 2**retries_done, MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


async def pause(seconds: float) -> None:
    """The wait before a retry."""
    await asyncio.sleep(seconds)


def error_message(status: int, body: bytes) -> str:
    """The upstream's own message when its body is OpenAI's error shape, else the body."""
    detail: Any = body.decode(errors="replace")[:2000]
    try:
        parsed = orjson.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        detail = error.get("message") or error if isinstance(error, dict) else parsed
    except orjson.JSONDecodeError:
        pass
    return f"Error code: {status} - {detail}"


def _raise_if_error(event: str, data: Any) -> None:
    if event == "error" or (isinstance(data, dict) and data.get("error")):
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str) or not message:
            message = "An error occurred during streaming"
        raise UpstreamError(message)


def _as_chunk(completion: Any) -> dict[str, Any]:
    """A whole (not streamed) chat completion as the one chunk that would have carried it."""
    if not isinstance(completion, dict):
        raise UpstreamError(f"The model answered with JSON that is not a completion: "
                            f"{str(completion)[:200]}")
    choices = []
    for choice in completion.get("choices") or ():
        message = dict(choice.get("message") or {})
        for index, call in enumerate(message.get("tool_calls") or ()):
            call.setdefault("index", index)
        choices.append({"index": choice.get("index", 0), "delta": message,
                        "finish_reason": choice.get("finish_reason")})
    return {**completion, "object": "chat.completion.chunk", "choices": choices}


class SseReader:
    """Server-sent events from a byte stream: (event name, data) for each event."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        buffer = self._buffer
        buffer += data
        found: list[tuple[str, bytes]] = []
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    found.append((self._event.decode(errors="replace"), b"\n".join(self._data)))
                self._event, self._data = b"", []
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value
        del buffer[:start]
        return found


def _buffered(response: aiohttp.ClientResponse) -> bytes:
    """Bytes received but not read yet, once the stream has failed (StreamReader's buffer)."""
    return b"".join(getattr(response.content, "_buffer", ()))


def _says_something(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries part of the answer (text, a tool call, its end), not only the
    role that begins it."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return False


class Answer:
    """An answer whose request is sent: its chunks as they come, or ``release()`` when they
    are not wanted after all. A stream that breaks off before any chunk said something, or
    ends without one (an HTTP 200 with no chunk, as some servers send), is asked again
    (``reopen``, up to ``retries`` times, with backoff), as a request that failed before its
    answer began would be: what was read of it only opened the answer."""

    def __init__(self, response: aiohttp.ClientResponse,
                 reopen: Callable[[], Awaitable[aiohttp.ClientResponse]] | None = None,
                 retries: int = 0) -> None:
        self._response = response
        self._reopen = reopen
        self._retries = retries

    def release(self) -> None:
        self._response.release()

    async def chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        said = False
        retries_done = 0
        while True:
            try:
                async with aclosing(self._read(self._response)) as chunks:
                    async for chunk in chunks:
                        said = said or _says_something(chunk)
                        yield chunk
                if said:
                    return
                raise UpstreamError(
                    f"an empty answer (HTTP {self._response.status} with no text, tool call "
                    f"or end in it), {retries_done + 1} times", broke_off=True, empty=True)
            except UpstreamError as err:
                if said or not err.broke_off or self._reopen is None \
                        or retries_done >= self._retries:
                    raise
            await pause(retry_delay(retries_done))
            retries_done += 1
            self._response = await self._reopen()

    @staticmethod
    async def _read(response: aiohttp.ClientResponse) -> AsyncGenerator[dict[str, Any], None]:
        try:
            if response.content_type == "application/json":
                completion = orjson.loads(await response.read())
                _raise_if_error("", completion)
                yield _as_chunk(completion)
                return
            reader = SseReader()
            done = False
            broken: BaseException | None = None
            while True:
                try:
                    data = await response.content.readany()
                except aiohttp.ClientPayloadError as err:
                    # The stream broke off. What arrived with the break is still buffered
                    # (aiohttp raises before handing it out): the answer so far is read too.
                    data, broken = _buffered(response), err
                if not data and broken is None:
                    break
                for event, payload in reader.feed(data):
                    if done:
                        continue  # read to the end, so the connection is kept for reuse
                    if payload.startswith(b"[DONE]"):
                        done = True
                        continue
                    chunk = orjson.loads(payload)
                    _raise_if_error(event, chunk)
                    if not isinstance(chunk, dict):
                        raise UpstreamError(f"The model sent a chunk that is not an object: "
                                            f"{payload[:200]!r}")
                    yield chunk
                if broken is not None:
                    raise broken
        except orjson.JSONDecodeError as err:
            raise UpstreamError(f"The model sent data that is not JSON: {err}") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamError(f"The stream from the model broke off: {err!r}",
                                broke_off=True) from err
        finally:
            response.release()
