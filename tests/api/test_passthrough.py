"""Chat completions and embeddings through this server to the model's upstream: the SDK's
client.chat.completions and client.embeddings, streamed and not, with tools and
response_format, and the upstream's errors in OpenAI's shape."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.api.responses_support import scripted_model
from vtai.testing import Call, Error, FakeModelServer, Reply, ToolCalls, embed


def test_a_chat_completion_is_passed_on(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Passed on."))
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], temperature=0.3,
        response_format={"type": "json_object"}, seed=7)
    assert completion.choices[0].message.content == "Passed on."
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = fake_model.requests(model)[-1]
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent["temperature"] == 0.3 and sent["seed"] == 7
    assert sent["response_format"] == {"type": "json_object"}


def test_a_streamed_chat_completion_streams(client: OpenAI,
                                            fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("one two three", chunk_size=4))
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three" and len(chunks) > 3
    assert chunks[-1].usage is not None


def test_tool_calls_come_back(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, ToolCalls([Call("lookup", {"q": "x"})]))
    tools = [{"type": "function", "function": {"name": "lookup",
                                               "parameters": {"type": "object"}}}]
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Look"}], tools=tools)  # type: ignore
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and call.function.arguments == '{"q":"x"}'
    assert fake_model.requests(model)[-1]["tools"] == tools


def test_embeddings_are_passed_on(client: OpenAI) -> None:
    result = client.embeddings.create(model="any-embedder", input=["a cat", "a dog"])
    assert [item.index for item in result.data] == [0, 1]
    assert result.data[0].embedding == pytest.approx(embed("a cat"), abs=1e-6)


def test_upstream_errors_come_back_in_openais_shape(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Error(400, "context too long", code="context_length"))
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert "context too long" in refused.value.message
    model = scripted_model(fake_model, *[Error(503, "overloaded")] * 3)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and "overloaded" in failed.value.message
    with pytest.raises(openai.BadRequestError):  # no messages: refused before any upstream
        client.chat.completions.create(model=model, messages=[])


def test_a_null_content_beside_tool_calls_is_left_out(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    """(The suite's fake model refuses ``"content": null`` as llama-cpp-python's server does.)"""
    model = scripted_model(fake_model, Reply("ok"))
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    client.chat.completions.create(model=model, messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [call]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": "call_1", "content": "done"}])
    assert fake_model.requests(model)[-1]["messages"][1] == {"role": "assistant",
                                                            "tool_calls": [call]}
