"""Conversations through the official SDK, and the bridge: a thread is a conversation, so an app
moves from the Assistants API to the Responses API one code path at a time."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.api.responses_support import scripted_model
from tests.api.runs_support import scripted_assistant, wait_for_status
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls


def _texts(items: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(item.role, item.content[0].text) for item in items if item.type == "message"]


def test_a_conversation_holds_items(client: OpenAI) -> None:
    conversation = client.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "Hello"},
               {"type": "message", "role": "assistant", "content": "Hi! How can I help?"}])
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "demo"}
    updated = client.conversations.update(conversation.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}

    added = client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "developer", "content": "Answer in French."},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"}])
    assert [item.type for item in added.data] == ["message", "function_call",
                                                  "function_call_output"]
    listed = client.conversations.items.list(conversation.id, order="asc")
    assert [item.type for item in listed.data] == ["message", "message", "message",
                                                   "function_call", "function_call_output"]
    assert _texts(listed.data) == [("user", "Hello"), ("assistant", "Hi! How can I help?"),
                                   ("developer", "Answer in French.")]
    assert listed.data[1].content[0].type == "output_text"  # type: ignore[union-attr]
    newest_first = client.conversations.items.list(conversation.id, limit=2)
    assert [i.type for i in newest_first.data] == ["function_call_output", "function_call"]
    assert newest_first.has_more is True
    after = client.conversations.items.list(conversation.id, limit=2,
                                            after=newest_first.last_id)
    assert [i.type for i in after.data] == ["message", "message"]

    first = listed.data[0]
    assert client.conversations.items.retrieve(first.id,
                                               conversation_id=conversation.id).id == first.id
    left = client.conversations.items.delete(first.id, conversation_id=conversation.id)
    assert left.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(first.id, conversation_id=conversation.id)

    with pytest.raises(openai.BadRequestError):
        client.conversations.items.create(conversation.id, items=[
            {"type": "message", "role": "user", "content": str(n)} for n in range(21)])
    deleted = client.conversations.delete(conversation.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_a_response_reads_and_extends_its_conversation(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Paris."), Reply("About two million."))
    conversation = client.conversations.create(items=[
        {"type": "message", "role": "developer", "content": "Be short."}])
    first = client.responses.create(model=model, input="Capital of France?",
                                    conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    second = client.responses.create(model=model, input="Its population?",
                                     conversation={"id": conversation.id})
    assert second.output_text == "About two million."
    assert fake_model.requests(model)[-1]["messages"] == [
        {"role": "system", "content": "Be short."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"}]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert _texts(items) == [("developer", "Be short."), ("user", "Capital of France?"),
                             ("assistant", "Paris."), ("user", "Its population?"),
                             ("assistant", "About two million.")]
    assert items[2].id == first.output[0].id  # the output item is the conversation's


def test_function_calls_go_into_the_conversation(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    model = scripted_model(fake_model, ToolCalls([Call("lookup", {"q": "x"})]), Reply("Done."))
    conversation = client.conversations.create()
    first = client.responses.create(model=model, input="Look it up", tools=[tool],  # type: ignore
                                    conversation=conversation.id)
    call = first.output[0]
    client.responses.create(model=model, tools=[tool], conversation=conversation.id,  # type: ignore
                            input=[{"type": "function_call_output", "call_id": call.call_id,
                                    "output": "42"}])
    kinds = [i.type for i in client.conversations.items.list(conversation.id, order="asc")]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert fake_model.requests(model)[-1]["messages"][-1] == {
        "role": "tool", "tool_call_id": call.call_id, "content": "42"}


def test_a_thread_is_a_conversation(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, run_model = scripted_assistant(client, fake_model, Reply("From a run."))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hello run"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"

    # the thread's messages, as a conversation's items
    items = client.conversations.items.list(thread.id, order="asc").data
    assert _texts(items) == [("user", "Hello run"), ("assistant", "From a run.")]
    assert client.conversations.retrieve(thread.id).id == thread.id

    # a response continues the thread; its answer shows in the thread's messages
    model = scripted_model(fake_model, Reply("From a response."))
    response = client.responses.create(model=model, input="Hello response",
                                       conversation=thread.id)
    assert fake_model.requests(model)[-1]["messages"] == [
        {"role": "user", "content": "Hello run"},
        {"role": "assistant", "content": "From a run."},
        {"role": "user", "content": "Hello response"}]
    messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [(m.role, m.content[0].text.value) for m in messages] == [  # type: ignore
        ("user", "Hello run"), ("assistant", "From a run."), ("user", "Hello response"),
        ("assistant", "From a response.")]
    assert messages[-1].id == response.output[0].id

    # and a run after it reads what the response added
    fake_model.script(run_model, Reply("Run again."))
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                     assistant_id=assistant.id)
    assert again.status == "completed"
    assert "user: Hello response" in _echo_of(fake_model, run_model)
    assert "assistant: From a response." in _echo_of(fake_model, run_model)


def _echo_of(fake_model: FakeModelServer, model: str) -> str:
    messages = fake_model.requests(model)[-1]["messages"]
    return "\n".join(f"{m['role']}: {m.get('content')}" for m in messages)


def test_a_conversation_is_a_thread(client: OpenAI) -> None:
    conversation = client.conversations.create(items=[
        {"type": "message", "role": "user", "content": "Made as a conversation"}])
    thread = client.beta.threads.retrieve(conversation.id)
    assert thread.id == conversation.id
    messages = client.beta.threads.messages.list(conversation.id).data
    assert [m.content[0].text.value for m in messages] == \
        ["Made as a conversation"]  # type: ignore[union-attr]


def test_a_thread_with_an_active_run_takes_no_response(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("slow", first_token_delay=30))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    try:
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(model=scripted_model(fake_model), input="Also",
                                    conversation=thread.id)
        assert err.value.body["param"] == "conversation"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            client.conversations.items.create(thread.id, items=[
                {"type": "message", "role": "user", "content": "x"}])
    finally:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        wait_for_status(client, thread.id, run.id, {"cancelled"})


def test_a_missing_conversation_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve("conv_missing")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="any", input="x", conversation="conv_missing")
