"""The clients of the runs benchmark: each calls the model directly and our server (a streamed
run, or a streamed response), through the official SDK, raw SSE over httpx, or SSE bytes
over bench.rawhttp, and times the first token and the end."""

from __future__ import annotations

import re
import time

import httpx
import orjson
from openai import AsyncOpenAI

from bench.rawhttp import HTTPError, RawConnection

PROMPT = "Say twenty words, please."


# Each worker of the load generator gets clients of its own: httpcore's connection pool does
# O(connections) work for every request and response, so one pool of 200 busy connections
# spends the load generator's CPU on pool bookkeeping instead of on reading streams.
_LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
_TIMEOUT = httpx.Timeout(120, connect=30)


class _SdkPaths:
    """Both paths through the official SDK, as an application calls them."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = self._sdk(model_url)
        self.server = self._sdk(server_url)

    @staticmethod
    def _sdk(base_url: str) -> AsyncOpenAI:
        http = httpx.AsyncClient(limits=_LIMITS, timeout=_TIMEOUT)
        return AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http)

    async def direct(self, model: str) -> tuple[float | None, str]:
        """Time of the first content delta (None if none came), and how the stream ended."""
        first = None
        stream = await self.model.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True)
        finish = "no finish_reason"
        async for chunk in stream:
            if chunk.choices:
                if first is None and chunk.choices[0].delta.content:
                    first = time.perf_counter()
                finish = chunk.choices[0].finish_reason or finish
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        """Time of the first `thread.message.delta`, and the run's last status."""
        first = None
        status = "no status"
        async with self.server.beta.threads.runs.stream(
                thread_id=thread_id, assistant_id=assistant_id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    if first is None:
                        first = time.perf_counter()
                elif event.event.startswith("thread.run."):
                    status = event.event.removeprefix("thread.run.")
                elif event.event == "error":
                    return first, f"error event: {event.data}"
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        """Time of the first `response.output_text.delta`, and how the response ended."""
        first = None
        status = "no status"
        stream = await self.server.responses.create(model=model, input=PROMPT, stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                if first is None:
                    first = time.perf_counter()
            elif event.type in _RESPONSE_ENDS:
                status = event.type.removeprefix("response.")
        return first, status

    async def close(self) -> None:
        await self.model.close()
        await self.server.close()


class _HttpxPaths:
    """Both paths as raw SSE over httpx: the least client CPU, for a view of the server alone."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = httpx.AsyncClient(base_url=model_url, limits=_LIMITS, timeout=_TIMEOUT)
        self.server = httpx.AsyncClient(base_url=server_url, limits=_LIMITS, timeout=_TIMEOUT)

    async def direct(self, model: str) -> tuple[float | None, str]:
        first = None
        finish = "no finish_reason"
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                "stream": True}
        async with self.model.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}"
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = orjson.loads(line[6:])["choices"]
                if choices:
                    if first is None and choices[0]["delta"].get("content"):
                        first = time.perf_counter()
                    finish = choices[0]["finish_reason"] or finish
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = {"assistant_id": assistant_id, "stream": True}
        async with self.server.stream("POST", f"/threads/{thread_id}/runs",
                                      json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            async for line in response.aiter_lines():
                if not line.startswith("event: "):
                    continue
                if line == "event: thread.message.delta":
                    if first is None:
                        first = time.perf_counter()
                elif line.startswith("event: thread.run."):
                    status = line.removeprefix("event: thread.run.")
                elif line == "event: error":
                    status = "error event"
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = {"model": model, "input": PROMPT, "stream": True}
        async with self.server.stream("POST", "/responses", json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            async for line in response.aiter_lines():
                if line == "event: response.output_text.delta":
                    if first is None:
                        first = time.perf_counter()
                elif line.removeprefix("event: ") in _RESPONSE_ENDS:
                    status = line.removeprefix("event: response.")
        return first, status

    async def close(self) -> None:
        await self.model.aclose()
        await self.server.aclose()


_CONTENT = re.compile(rb'"content":"[^"]')
_RUN_STATUS = re.compile(rb"event: (?:thread\.run\.(\w+)|(error))\n")
_RESPONSE_END = re.compile(rb"event: response\.(completed|failed|incomplete)\n")
_RESPONSE_ENDS = ("response.completed", "response.failed", "response.incomplete")
_TAIL = 64  # bytes kept from one piece to the next, so a pattern split between them is found


class _RawPaths:
    """Both paths as SSE bytes over bench.rawhttp, scanned without parsing: the least
    client CPU of all, so the load generator takes the least from the server's cores."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = RawConnection(model_url)
        self.server = RawConnection(server_url)

    async def direct(self, model: str) -> tuple[float | None, str]:
        first = None
        finish = "no finish_reason"
        body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}],
                             "stream": True})
        seen = b""
        try:
            async for piece in self.model.stream("POST", "/chat/completions", body):
                seen = seen[-_TAIL:] + piece
                if first is None and _CONTENT.search(seen):
                    first = time.perf_counter()
                if b'"finish_reason":"stop"' in seen:
                    finish = "stop"
        except HTTPError as err:
            return None, str(err)
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = orjson.dumps({"assistant_id": assistant_id, "stream": True})
        seen = b""
        try:
            async for piece in self.server.stream("POST", f"/threads/{thread_id}/runs", body):
                seen = seen[-_TAIL:] + piece
                if first is None and b"event: thread.message.delta\n" in seen:
                    first = time.perf_counter()
                for run_status, _ in _RUN_STATUS.findall(piece):
                    status = run_status.decode() if run_status else "error event"
        except HTTPError as err:
            return None, str(err)
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = orjson.dumps({"model": model, "input": PROMPT, "stream": True})
        seen = b""
        try:
            async for piece in self.server.stream("POST", "/responses", body):
                seen = seen[-_TAIL:] + piece
                if first is None and b"event: response.output_text.delta\n" in seen:
                    first = time.perf_counter()
                for end in _RESPONSE_END.findall(piece):
                    status = end.decode()
        except HTTPError as err:
            return None, str(err)
        return first, status

    async def close(self) -> None:
        await self.model.close()
        await self.server.close()


Paths = _SdkPaths | _HttpxPaths | _RawPaths
_CLIENTS: dict[str, type[_SdkPaths] | type[_HttpxPaths] | type[_RawPaths]] = {
    "sdk": _SdkPaths, "httpx": _HttpxPaths, "raw": _RawPaths}
# `probes`: one worker in PROBE_EVERY (the first, the fifth, ...) is an application on the
# official SDK, and only those are measured; the others load the server as many clients do,
# reading raw SSE bytes, so the load generator's SDK parsing does not take the cores the
# server needs (as it would not with the applications on machines of their own).
PROBE_EVERY = 4


def is_probe(client: str, index: int) -> bool:
    """Whether worker ``index`` is measured (with any client but `probes`, all are)."""
    return client != "probes" or index % PROBE_EVERY == 0


def measured_workers(client: str, concurrency: int) -> int:
    return sum(is_probe(client, i) for i in range(concurrency))


def make_paths(client: str, index: int, model_url: str, server_url: str) -> Paths:
    if client == "probes":
        return (_SdkPaths if is_probe(client, index) else _RawPaths)(model_url, server_url)
    return _CLIENTS[client](model_url, server_url)
