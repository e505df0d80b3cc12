"""The fake model server, driven by the official openai SDK over real HTTP."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from starlette.testclient import TestClient

from vtai.testing import (
    Call,
    Drop,
    Echo,
    Empty,
    Error,
    FakeModelServer,
    FakeModelState,
    Garbage,
    Hang,
    Raw,
    Reply,
    ToolCalls,
    create_app,
    step_from_json,
)

USER_HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def sdk(fm: FakeModelServer) -> OpenAI:
    return OpenAI(base_url=fm.base_url, api_key="x", max_retries=0)


def stream_chunks(sdk: OpenAI, model: str = "m", **kwargs: Any) -> list[Any]:
    kwargs.setdefault("messages", USER_HI)
    return list(sdk.chat.completions.create(model=model, stream=True, **kwargs))


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------- replies


def test_streamed_reply_reassembles_word_by_word(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Reply("Hello world, how are you?"))

    chunks = stream_chunks(sdk)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == [
        "Hello ",
        "world, ",
        "how ",
        "are ",
        "you?",
    ]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert streamed_text(chunks) == "Hello world, how are you?"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == "m"


def test_exact_chunks_and_chunk_size(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Reply(chunks=["He", "llo", "!"]), Reply("abcdefg", chunk_size=3))

    first, second = stream_chunks(sdk), stream_chunks(sdk)

    assert [c.choices[0].delta.content for c in first[1:-1]] == ["He", "llo", "!"]
    assert [c.choices[0].delta.content for c in second[1:-1]] == ["abc", "def", "g"]


def test_non_streamed_reply_has_message_and_usage(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Reply("Hello world", finish_reason="length"))

    completion = sdk.chat.completions.create(model="m", messages=USER_HI)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    # "hi": ceil(2 / 4) + 3 per message; "Hello world": ceil(11 / 4).
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    assert completion.usage.total_tokens == 7


def test_usage_override_and_include_usage_chunk(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Reply("one two"), Reply("x", usage={"completion_tokens": 50}))

    plain = stream_chunks(sdk, stream_options={"include_usage": True})
    overridden = stream_chunks(sdk, stream_options={"include_usage": True})

    assert plain[-1].choices == []
    assert plain[-1].usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "total_tokens": 6,
    }
    assert plain[-2].choices[0].finish_reason == "stop"
    assert overridden[-1].usage.completion_tokens == 50
    assert overridden[-1].usage.total_tokens == 54
    assert all(c.usage is None for c in stream_chunks(sdk))


def test_first_token_delay_is_felt(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Reply("slow start", first_token_delay=0.2, chunk_delay=0.01))
    started = time.monotonic()

    chunks = stream_chunks(sdk)

    assert time.monotonic() - started >= 0.2
    assert streamed_text(chunks) == "slow start"


# ---------------------------------------------------------------------------- tool calls


def test_parallel_tool_calls_reassemble_from_stream(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script(
        "m",
        ToolCalls(
            [Call("get_weather", {"city": "Paris"}), Call("lookup", '{"q": "x"}', id="call_fixed")],
            text="Checking.",
        ),
    )

    chunks = stream_chunks(sdk)

    calls: dict[int, dict[str, Any]] = {}
    fragments: dict[int, int] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                assert delta.type == "function"
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                fragments[delta.index] = fragments.get(delta.index, 0) + 1
    assert streamed_text(chunks) == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[1] == {"id": "call_fixed", "name": "lookup", "arguments": '{"q": "x"}'}
    assert fragments[0] >= 2 and fragments[1] >= 2


def test_tool_calls_non_streamed(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", ToolCalls([Call("f", {"a": 1})]))

    completion = sdk.chat.completions.create(model="m", messages=USER_HI)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == ("f", {"a": 1})


# -------------------------------------------------------------------------------- faults


def test_error_steps_raise_the_sdk_errors(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script(
        "m",
        Error(
            429,
            "slow down",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"retry-after": "7"},
        ),
        Error(500),
    )

    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="m", messages=USER_HI, stream=True)
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="m", messages=USER_HI)

    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert failed.value.status_code == 500


def test_drop_cuts_the_stream_before_a_finish_reason(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Drop("partial answer that never ends", after_chunks=2))
    seen: list[Any] = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in sdk.chat.completions.create(model="m", messages=USER_HI, stream=True):
            seen.append(chunk)

    assert streamed_text(seen) == "partial answer "
    assert all(c.choices[0].finish_reason is None for c in seen)


def test_drop_cuts_a_non_streamed_body(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Drop())

    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(model="m", messages=USER_HI)


def test_hang_times_out_the_client_then_the_server_moves_on(
    fm: FakeModelServer, sdk: OpenAI
) -> None:
    fm.script("m", Hang(30), Hang(0.05))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        sdk.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=USER_HI, stream=True
        )
    late = sdk.chat.completions.create(model="m", messages=USER_HI)

    assert time.monotonic() - started < 3
    assert late.choices[0].message.content == "You said: hi"


def test_garbage_is_not_json(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Garbage(), Garbage())

    with pytest.raises(ValueError):
        sdk.chat.completions.create(model="m", messages=USER_HI)
    with pytest.raises(ValueError):
        stream_chunks(sdk)


# ------------------------------------------------------------ other providers' shapes


def test_a_name_repeated_in_every_chunk(fm: FakeModelServer) -> None:
    """As llama-cpp-python's server streams a call: each chunk has the whole name, the id
    and the legacy function_call beside tool_calls."""
    fm.script("m", ToolCalls([Call("get_weather", {"city": "Oslo"}, repeat_name=True)]))
    with httpx.stream("POST", f"{fm.base_url}/chat/completions", json={
            "model": "m", "messages": USER_HI, "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"][0]["delta"].get(
        "tool_calls")]
    assert len(deltas) >= 3
    assert {d["tool_calls"][0]["function"]["name"] for d in deltas} == {"get_weather"}
    assert len({d["tool_calls"][0]["id"] for d in deltas}) == 1
    assert all(d["function_call"]["name"] == "get_weather" for d in deltas)
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas)
    assert json.loads(arguments) == {"city": "Oslo"}


def test_empty_and_raw_answers(fm: FakeModelServer) -> None:
    fm.script("m", Empty(), Raw('{"error": "teapot"}', status=418,
                                content_type="application/json"))
    body = {"model": "m", "messages": USER_HI, "stream": True}
    empty = httpx.post(f"{fm.base_url}/chat/completions", json=body)
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-type"].startswith("text/event-stream")
    raw = httpx.post(f"{fm.base_url}/chat/completions", json=body)
    assert (raw.status_code, raw.json()) == (418, {"error": "teapot"})


def test_null_content_can_be_refused() -> None:
    messages = [*USER_HI, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]
    with FakeModelServer(refuse_null_content=True) as strict:
        sdk = OpenAI(base_url=strict.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="valid string"):
            sdk.chat.completions.create(model="m", messages=messages)
        without = [{k: v for k, v in m.items() if v is not None} for m in messages]
        assert sdk.chat.completions.create(model="m", messages=without).choices


# ----------------------------------------------------------------- prompts and scripting


def test_echo_renders_the_received_messages(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("m", Echo())
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "now?"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]

    completion = sdk.chat.completions.create(model="m", messages=messages)

    assert completion.choices[0].message.content == (
        "system: Be brief.\n"
        "user: Weather now?\n"
        'assistant: get_weather({"city":"Paris"})\n'
        "tool: sunny"
    )


def test_unscripted_model_says_what_it_heard(fm: FakeModelServer, sdk: OpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "turn"}],
        },
    ]

    chunks = stream_chunks(sdk, model="anything", messages=messages)

    assert streamed_text(chunks) == "You said: second turn"
    assert len(chunks) == 2 + 4  # role chunk, one chunk a word, finish chunk


def test_default_step_is_configurable() -> None:
    with (
        FakeModelServer(default=Reply("fixed")) as fixed,
        FakeModelServer(default=lambda body: Reply(str(len(body["messages"])))) as counting,
    ):
        answers = [
            OpenAI(base_url=fm.base_url, api_key="x", max_retries=0)
            .chat.completions.create(model="m", messages=USER_HI)
            .choices[0]
            .message.content
            for fm in (fixed, counting)
        ]
    assert answers == ["fixed", "1"]


def test_callable_steps_branch_on_the_request(fm: FakeModelServer, sdk: OpenAI) -> None:
    def by_prompt(body: dict[str, Any]) -> Reply | ToolCalls:
        if "weather" in body["messages"][-1]["content"]:
            return ToolCalls([Call("get_weather", {})])
        return Reply("no tools needed")

    async def from_coroutine(body: dict[str, Any]) -> Reply:
        return Reply(body["model"])

    def broken(body: dict[str, Any]) -> Reply:
        raise RuntimeError("bug in test")

    fm.script("m", by_prompt, by_prompt, from_coroutine, broken)

    weather = sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}]
    )
    chat = sdk.chat.completions.create(model="m", messages=USER_HI)
    coroutine = sdk.chat.completions.create(model="m", messages=USER_HI)
    with pytest.raises(openai.InternalServerError, match="bug in test"):
        sdk.chat.completions.create(model="m", messages=USER_HI)

    assert weather.choices[0].finish_reason == "tool_calls"
    assert chat.choices[0].message.content == "no tools needed"
    assert coroutine.choices[0].message.content == "m"


def test_requests_are_recorded_per_model_and_prefix_is_stripped(
    fm: FakeModelServer, sdk: OpenAI
) -> None:
    fm.script("m", Reply("a"), Reply("b"))
    fm.script("other", Reply("c"))

    first = sdk.chat.completions.create(model="ollama/m", messages=USER_HI, temperature=0.5)
    second = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "2"}])
    other = sdk.chat.completions.create(model="other", messages=USER_HI)

    assert [c.choices[0].message.content for c in (first, second, other)] == ["a", "b", "c"]
    assert first.model == "ollama/m"
    recorded = fm.requests("m")
    assert [r["model"] for r in recorded] == ["ollama/m", "m"]
    assert recorded[0]["temperature"] == 0.5
    assert recorded[1]["messages"] == [{"role": "user", "content": "2"}]
    assert len(fm.requests()) == 3
    fm.reset()
    assert fm.requests() == []
    after_reset = sdk.chat.completions.create(model="m", messages=USER_HI)
    assert after_reset.choices[0].message.content == "You said: hi"


def test_steps_round_trip_through_json() -> None:
    steps = [
        Reply("hi", chunks=["h", "i"], chunk_delay=0.1, usage={"prompt_tokens": 1}),
        ToolCalls([Call("f", {"a": 1}), Call("g", "raw", id="call_1")], text="t"),
        Error(429, "slow", type="rate_limit_error", headers={"retry-after": "1"}),
        Drop("x", after_chunks=0),
        Hang(1.5),
        Garbage("<html>"),
        Empty(),
        Raw("data: [DONE]\n\n", status=201, content_type="text/plain"),
        ToolCalls([Call("f", {}, repeat_name=True)]),
        Echo(),
    ]
    assert [step_from_json(json.loads(json.dumps(s.to_json()))) for s in steps] == steps
    for bad in ({"type": "nope"}, {"type": "reply", "text": 5}, {"type": "reply", "txt": "a"}):
        with pytest.raises(ValueError):
            step_from_json(bad)


def test_http_scripting_interface(fm: FakeModelServer, sdk: OpenAI) -> None:
    root = fm.base_url.removesuffix("/v1")
    steps = [
        {"type": "reply", "text": "hi there", "chunk_delay": 0.01},
        {"type": "tool_calls", "calls": [{"name": "f", "arguments": {"a": 1}}]},
        {"type": "error", "status": 429},
    ]

    scripted = httpx.post(f"{root}/_fake/script", json={"model": "remote", "steps": steps})
    bad = httpx.post(f"{root}/_fake/script", json={"model": "remote", "steps": [{"type": "x"}]})
    reply = streamed_text(stream_chunks(sdk, model="remote"))
    call = sdk.chat.completions.create(model="remote", messages=USER_HI)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="remote", messages=USER_HI)
    recorded = httpx.get(f"{root}/_fake/requests", params={"model": "remote"}).json()
    reset = httpx.post(f"{root}/_fake/reset")

    assert scripted.json() == {"model": "remote", "queued": 3}
    assert bad.status_code == 400 and "unknown step type" in bad.json()["error"]["message"]
    assert reply == "hi there"
    assert call.choices[0].message.tool_calls[0].function.arguments == '{"a":1}'
    assert [body["model"] for body in recorded["data"]] == ["remote"] * 3
    assert reset.status_code == 200 and fm.requests() == []


# --------------------------------------------------------------------- models and errors


def test_models_and_unknown_routes(fm: FakeModelServer, sdk: OpenAI) -> None:
    fm.script("scripted", Reply("x"))

    listed = [m.id for m in sdk.models.list()]
    retrieved = sdk.models.retrieve("anything/at-all")
    missing = httpx.get(f"{fm.base_url}/nowhere")
    bad_json = httpx.post(f"{fm.base_url}/chat/completions", content=b"{nope")

    assert listed == ["fake-model", "scripted"]
    assert retrieved.id == "anything/at-all"
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "Invalid URL (GET /v1/nowhere)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert bad_json.status_code == 400 and "error" in bad_json.json()


def test_create_app_runs_in_process() -> None:
    with TestClient(create_app()) as http:
        response = http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER_HI, "stream": True}
        )
    lines = [line for line in response.text.split("\n\n") if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[1].removeprefix("data: "))["choices"][0]["delta"] == {"content": "You "}


def test_recorded_requests_keep_the_newest() -> None:
    state = FakeModelState(max_recorded=3)
    with TestClient(create_app(state)) as http:
        for n in range(5):
            http.post("/v1/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": f"hi {n}"}]})
        listed = http.get("/_fake/requests").json()["data"]
    assert [body["messages"][0]["content"] for body in state.requests()] == \
        ["hi 2", "hi 3", "hi 4"]
    assert [body["messages"][0]["content"] for body in listed] == ["hi 2", "hi 3", "hi 4"]
    unbounded = FakeModelState(max_recorded=None)
    for n in range(20_000):
        unbounded.record({"model": "m", "n": n})
    assert len(unbounded.requests()) == 20_000


def test_stop_does_not_wait_for_hung_requests() -> None:
    fm = FakeModelServer(default=Hang(30)).start()
    sdk = OpenAI(base_url=fm.base_url, api_key="x", max_retries=0)
    errors: list[Exception] = []

    def call() -> None:
        try:
            sdk.chat.completions.create(model="m", messages=USER_HI)
        except openai.APIError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    while not fm.requests():
        time.sleep(0.01)
    started = time.monotonic()
    fm.stop()
    waiter.join(5)

    assert time.monotonic() - started < 1.5
    assert [type(e) for e in errors] == [openai.APIConnectionError]


# ---------------------------------------------------------------------------- embeddings


def test_embeddings_are_deterministic_normalised_and_meaningful(sdk: OpenAI) -> None:
    texts = ["cat sat on the mat", "the cat sat", "stock market report"]

    first = [d.embedding for d in sdk.embeddings.create(model="e", input=texts).data]
    again = sdk.embeddings.create(model="e", input=texts[0]).data[0].embedding

    assert [len(v) for v in first] == [384] * 3
    assert again == first[0]
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-5) for v in first)
    cat, cat_again, stocks = first
    assert cosine(cat, cat_again) > 0.5
    assert cosine(cat, cat_again) > cosine(cat, stocks) + 0.3


def test_embeddings_formats_dimensions_and_token_ids(sdk: OpenAI, fm: FakeModelServer) -> None:
    as_base64 = sdk.embeddings.create(model="e", input="hello world", dimensions=64)
    as_floats = sdk.embeddings.create(
        model="e", input="hello world", dimensions=64, encoding_format="float"
    )
    tokens = sdk.embeddings.create(model="e", input=[[1, 2, 3], [1, 2, 4]])
    raw = httpx.post(
        f"{fm.base_url}/embeddings", json={"model": "e", "input": "a", "encoding_format": "base64"}
    ).json()

    assert as_base64.data[0].embedding == as_floats.data[0].embedding
    assert len(as_floats.data[0].embedding) == 64
    assert as_floats.usage.prompt_tokens == 3
    assert isinstance(raw["data"][0]["embedding"], str)
    assert tokens.usage.prompt_tokens == 6
    assert 0 < cosine(tokens.data[0].embedding, tokens.data[1].embedding) < 1
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model="e", input=[])
