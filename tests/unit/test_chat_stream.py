"""Streamed chat completions over aiohttp: SSE framing, the SDK's retry rules, and errors,
against the fake model over real HTTP (and a bare aiohttp server for what it cannot do)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from vtai.server.providers import chat_stream
from vtai.server.providers.chat_stream import SseReader, UpstreamError
from vtai.server.providers.upstream import Upstream
from vtai.server.runs.model_call import failure_from_upstream
from vtai.testing import Call, Drop, Error, FakeModelServer, Garbage, Hang, Reply, ToolCalls

PARAMS = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries record their delay instead of sleeping it."""
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(chat_stream, "pause", sleep)
    return waited


async def _chunks(streams: Upstream, params: dict[str, Any] | None = None
                  ) -> list[dict[str, Any]]:
    try:
        return [chunk async for chunk in streams.stream(params or PARAMS)]
    finally:
        await streams.close()


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c.get("choices"))


def test_sse_reader_frames_events_however_the_bytes_are_cut() -> None:
    stream = (b": a comment\r\nevent: delta\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
              b"data: [DONE]\n\n")
    for size in (1, 2, 7, len(stream)):
        reader = SseReader()
        found = []
        for start in range(0, len(stream), size):
            found += reader.feed(stream[start:start + size])
        assert found == [("delta", b'{"a":\n1}'), ("", b"[DONE]")]


async def test_reply_and_usage_arrive_as_dicts(fm: FakeModelServer) -> None:
    fm.script("m", Reply("Hello there, friend"))
    chunks = await _chunks(Upstream(fm.base_url, "k"),
                           {**PARAMS, "stream_options": {"include_usage": True}})
    assert _text(chunks) == "Hello there, friend"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert fm.requests("m")[-1]["messages"] == PARAMS["messages"]


async def test_tool_call_deltas_pass_through(fm: FakeModelServer) -> None:
    fm.script("m", ToolCalls([Call("get_weather", {"city": "Oslo"}),
                              Call("get_time", {"zone": "CET"})]))
    chunks = await _chunks(Upstream(fm.base_url, "k"))
    calls = [call for c in chunks if c.get("choices")
             for call in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert {call["function"].get("name") for call in calls} >= {"get_weather", "get_time"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_retryable_answers_are_retried_with_backoff(fm: FakeModelServer,
                                                          _no_waiting: list[float]) -> None:
    fm.script("m", Error(500), Error(429, headers={"retry-after-ms": "1500"}), Reply("ok"))
    chunks = await _chunks(Upstream(fm.base_url, "k", max_retries=2))
    assert _text(chunks) == "ok"
    assert len(_no_waiting) == 2
    assert 0.375 <= _no_waiting[0] <= 0.5  # 0.5 s less up to a quarter of jitter
    assert _no_waiting[1] == 1.5  # what the upstream asked for


async def test_errors_that_are_not_retried_say_what_the_upstream_said(
        fm: FakeModelServer, _no_waiting: list[float]) -> None:
    fm.script("m", Error(400, "the prompt is too long", type="invalid_request_error"))
    with pytest.raises(UpstreamError) as err:
        await _chunks(Upstream(fm.base_url, "k", max_retries=2))
    assert err.value.status == 400 and "the prompt is too long" in err.value.message
    assert _no_waiting == []


async def test_retries_run_out(fm: FakeModelServer, _no_waiting: list[float]) -> None:
    fm.script("m", Error(503), Error(503), Error(503))
    with pytest.raises(UpstreamError) as err:
        await _chunks(Upstream(fm.base_url, "k", max_retries=1))
    assert err.value.status == 503 and len(_no_waiting) == 1


async def test_a_refused_connection_is_retried_then_fails(_no_waiting: list[float]) -> None:
    with pytest.raises(UpstreamError) as err:
        await _chunks(Upstream("http://127.0.0.1:9/v1", "k", max_retries=2))
    assert err.value.status is None and "Connection error" in err.value.message
    assert err.value.unreachable and "127.0.0.1:9" in err.value.message
    assert len(_no_waiting) == 2
    failure = failure_from_upstream(err.value, "lab")
    assert failure.code == "server_error"
    assert failure.message.startswith("The model provider 'lab' could not be reached: ")


def test_run_errors_name_the_provider_and_what_it_did() -> None:
    cases = [(UpstreamError("busy", 429), "rate_limit_exceeded", "is rate limiting"),
             (UpstreamError("bad", 400), "invalid_prompt", "rejected the request"),
             (UpstreamError("oops", 500), "server_error", "failed"),
             (UpstreamError("cut", broke_off=True), "server_error", "failed"),
             (UpstreamError("x", broke_off=True, empty=True), "server_error", "sent nothing")]
    for err, code, says in cases:
        failure = failure_from_upstream(err, "vllm")
        assert (failure.code, failure.message) == (code, f"The model provider 'vllm' {says}: "
                                                         f"{err}")


async def test_what_came_with_a_break_is_read() -> None:
    """An upstream that sends two chunks and cuts the connection in the same breath, read
    only once both have arrived: the chunks come out before the error."""
    events = b"".join(
        b'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % word
        for word in (b"partial ", b"answer "))
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
             b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(events), events))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)  # and no last chunk: the body is cut short
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    streams = Upstream(f"http://127.0.0.1:{port}/v1", "k", max_retries=0)
    answer = await streams.open(PARAMS)
    await asyncio.sleep(0.2)  # the rest of the body, and the break, arrive before any read
    received: list[dict[str, Any]] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in answer.chunks():
            received.append(chunk)
    await streams.close()
    server.close()
    assert "broke off" in err.value.message
    assert _text(received) == "partial answer "


@pytest.mark.parametrize(("step", "says"), [
    (Garbage(), "not JSON"),
    (Drop("partial answer ", 2), "broke off"),
])
async def test_broken_streams_raise(fm: FakeModelServer, step: object, says: str) -> None:
    fm.script("m", step)
    with pytest.raises(UpstreamError) as err:
        await _chunks(Upstream(fm.base_url, "k", max_retries=0))
    assert says in err.value.message and err.value.status is None


async def test_a_stream_broken_before_the_answer_says_anything_is_asked_again(
        fm: FakeModelServer, _no_waiting: list[float]) -> None:
    fm.script("m", Drop("never seen", 0), Drop("never seen", 0), Reply("ok"))
    chunks = await _chunks(Upstream(fm.base_url, "k", max_retries=2))
    assert _text(chunks) == "ok"
    assert len(fm.requests("m")) == 3 and len(_no_waiting) == 2


async def test_a_stream_broken_once_the_answer_began_is_not_asked_again(
        fm: FakeModelServer, _no_waiting: list[float]) -> None:
    fm.script("m", Drop("partial answer ", 2), Reply("ok"))
    received: list[dict[str, Any]] = []
    streams = Upstream(fm.base_url, "k", max_retries=2)
    with pytest.raises(UpstreamError) as err:
        try:
            async for chunk in streams.stream(PARAMS):
                received.append(chunk)
        finally:
            await streams.close()
    assert err.value.broke_off and _text(received) == "partial answer "
    assert len(fm.requests("m")) == 1 and _no_waiting == []


async def test_retries_of_a_broken_stream_run_out(fm: FakeModelServer,
                                                  _no_waiting: list[float]) -> None:
    fm.script("m", Drop("x", 0), Drop("x", 0), Reply("ok"))
    with pytest.raises(UpstreamError) as err:
        await _chunks(Upstream(fm.base_url, "k", max_retries=1))
    assert err.value.broke_off and len(fm.requests("m")) == 2


async def test_a_silent_upstream_times_out(fm: FakeModelServer) -> None:
    fm.script("m", Hang(5))
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        await _chunks(Upstream(fm.base_url, "k", max_retries=0, timeout=0.5))
    assert time.monotonic() - started < 4


def test_the_environment_names_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.lab")
    assert Upstream("https://api.example.com/v1", "k").proxy == "http://proxy.internal:3128"
    assert Upstream("https://gpu.lab/v1", "k").proxy is None
    assert Upstream("http://api.example.com/v1", "k").proxy is None  # no HTTP_PROXY


def test_retry_after_forms() -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert chat_stream.retry_after({"retry-after-ms": "250"}) == 0.25
    assert chat_stream.retry_after({"retry-after": "2"}) == 2.0
    assert 25 < (chat_stream.retry_after({"retry-after": soon}) or 0) <= 30
    assert chat_stream.retry_after({"retry-after": "3600"}) is None  # too long: backoff
    assert chat_stream.retry_after({"retry-after": "soon"}) is None
    assert chat_stream.retry_delay(10) <= chat_stream.MAX_RETRY_DELAY


@pytest.fixture
async def bare_upstream() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An upstream that answers with whatever body the test puts in ``bodies``."""
    bodies: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer k"
        body = bodies.pop(0)
        kind = "application/json" if body.startswith(b"{") else "text/event-stream"
        return web.Response(body=body, content_type=kind)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/v1")), bodies
    await server.close()


async def test_a_whole_completion_reads_as_one_chunk(
        bare_upstream: tuple[str, list[bytes]]) -> None:
    url, bodies = bare_upstream
    bodies.append(b'{"id": "c1", "object": "chat.completion", "choices": [{"index": 0, '
                  b'"message": {"role": "assistant", "content": "all at once"}, '
                  b'"finish_reason": "stop"}], "usage": {"total_tokens": 5}}')
    [chunk] = await _chunks(Upstream(url, "k"))
    assert chunk["object"] == "chat.completion.chunk" and chunk["usage"]["total_tokens"] == 5
    assert chunk["choices"][0]["delta"]["content"] == "all at once"
    assert chunk["choices"][0]["finish_reason"] == "stop"


async def test_an_error_inside_the_stream_raises(bare_upstream: tuple[str, list[bytes]]
                                                 ) -> None:
    url, bodies = bare_upstream
    bodies.append(b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
                  b'event: error\ndata: {"error": {"message": "the GPU fell over"}}\n\n')
    received = []
    streams = Upstream(url, "k")
    with pytest.raises(UpstreamError) as err:
        async for chunk in streams.stream(PARAMS):
            received.append(chunk)
    await streams.close()
    assert "the GPU fell over" in err.value.message
    assert _text(received) == "Hel"
