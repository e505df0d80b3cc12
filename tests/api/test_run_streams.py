"""Streams as the SDK's helpers read them: tool-call indexes whatever the upstream numbers,
steps one after another, a message announced with its first token, and what a stream that
ends early leaves stored; and what the model is sent of it all (answers replayed as they
came, image files)."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from typing import Any

from openai import AssistantEventHandler, OpenAI

from tests.api.runs_support import WEATHER_TOOL, event_names, scripted_assistant, wait_for_status
from tests.support import ServerProcess, sse_events
from vtai.testing import Call, Error, FakeModelServer, Hang, Reply, ToolCalls

NOTE_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "take_note", "parameters": {"type": "object",
                                        "properties": {"text": {"type": "string"}}}}}


class Recorder(AssistantEventHandler):
    """Every callback the SDK's stream helper makes, as the application sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls_done: Counter[str] = Counter()
        self.order: list[str] = []
        self.errors: list[Exception] = []
        self.step_at_action: Any = None

    def on_event(self, event: Any) -> None:
        self.order.append(event.event)
        if event.event == "thread.run.requires_action":
            self.step_at_action = self.current_run_step_snapshot

    def on_tool_call_done(self, tool_call: Any) -> None:
        self.calls_done[tool_call.id] += 1

    def on_exception(self, exception: Exception) -> None:
        self.errors.append(exception)


def _stream(client: OpenAI, thread_id: str, assistant_id: str) -> tuple[Recorder, Any]:
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id,
                                         event_handler=handler) as stream:
        stream.until_done()
        run = stream.get_final_run()
    assert handler.errors == []
    return handler, run


def _weather_prompt(client: OpenAI) -> str:
    return client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}]).id


def test_calls_numbered_from_one_stream_from_index_zero(
        server: ServerProcess, client: OpenAI, fake_model: FakeModelServer) -> None:
    """An upstream that numbers its parallel calls 1, 2 (as some providers do): the step's
    tool_calls are streamed at 0, 1, as the SDK indexes them."""
    calls = ToolCalls([Call("get_weather", {"city": "Paris"}, index=1),
                       Call("get_weather", {"city": "Oslo"}, index=2)])
    assistant, _ = scripted_assistant(client, fake_model, calls, tools=[WEATHER_TOOL])
    handler, run = _stream(client, _weather_prompt(client), assistant.id)
    assert run.status == "requires_action"
    required = run.required_action.submit_tool_outputs.tool_calls
    assert [json.loads(c.function.arguments) for c in required] == [
        {"city": "Paris"}, {"city": "Oslo"}]
    assert handler.step_at_action.step_details.tool_calls[1].function.arguments == \
        required[1].function.arguments

    thread = _weather_prompt(client)
    fake_model.script(assistant.model, calls)
    events = sse_events(f"{server.base_url}/threads/{thread}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    pieces = [d["delta"]["step_details"]["tool_calls"][0]
              for n, d in events if n == "thread.run.step.delta"]
    assert [p["index"] for p in pieces if "id" in p] == [0, 1]


def test_parallel_calls_sharing_one_index_stay_apart(client: OpenAI,
                                                     fake_model: FakeModelServer) -> None:
    """Two calls given index 0, told apart by their ids, and a name sent in pieces."""
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Paris"}, id="up_1", index=0, name_chunks=3),
                   Call("get_weather", {"city": "Oslo"}, id="up_2", index=0)]),
        tools=[WEATHER_TOOL])
    handler, run = _stream(client, _weather_prompt(client), assistant.id)
    required = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in required] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    streamed = handler.step_at_action.step_details.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in streamed] == [
        (c.id, c.function.name, c.function.arguments) for c in required]


def test_text_then_calls_completes_the_message_before_the_tool_step(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Paris"}),
                   Call("get_weather", {"city": "Oslo"})], text="Let me check."),
        Reply("Sunny and snowy."), tools=[WEATHER_TOOL])
    thread = _weather_prompt(client)
    handler, run = _stream(client, thread, assistant.id)
    assert run.status == "requires_action"
    assert event_names([(n, None) for n in handler.order]) == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
        "thread.message.in_progress", "thread.message.delta", "thread.message.completed",
        "thread.run.step.completed", "thread.run.step.created", "thread.run.step.in_progress",
        "thread.run.step.delta", "thread.run.requires_action"]
    required = run.required_action.submit_tool_outputs.tool_calls
    assert dict(handler.calls_done) == {c.id: 1 for c in required}  # each call done once
    assert handler.step_at_action is not None
    assert handler.step_at_action.type == "tool_calls"

    client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread,
        tool_outputs=[{"tool_call_id": c.id, "output": "ok"} for c in required])
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread, order="asc"))
    assert [(s.type, s.status) for s in steps] == [
        ("message_creation", "completed"), ("tool_calls", "completed"),
        ("message_creation", "completed")]
    assert [m.content[0].text.value for m in client.beta.threads.messages.list(
        thread, order="asc")] == ["Weather?", "Let me check.", "Sunny and snowy."]
    # the model's answer is replayed as it came: its text and its calls in one message
    replayed = fake_model.requests(model)[-1]["messages"]
    assert replayed[1]["role"] == "assistant" and replayed[1]["content"] == "Let me check."
    assert [c["id"] for c in replayed[1]["tool_calls"]] == [c.id for c in required]
    assert [m["role"] for m in replayed] == ["user", "assistant", "tool", "tool"]


def test_a_cancelled_tool_step_keeps_the_calls_it_streamed(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Oslo"})],
                  chunk_delay=0.3),
        tools=[WEATHER_TOOL])
    thread = _weather_prompt(client)
    streamed: dict[str, str] = {}
    with client.beta.threads.runs.stream(thread_id=thread, assistant_id=assistant.id) as stream:
        for event in stream:
            if event.event == "thread.run.created":
                run_id = event.data.id
            if event.event == "thread.run.step.delta":
                piece = event.data.delta.step_details.tool_calls[0]
                if piece.id:
                    streamed[piece.id] = ""
                    client.beta.threads.runs.cancel(run_id, thread_id=thread)
    assert stream.get_final_run().status == "cancelled"
    (step,) = client.beta.threads.runs.steps.list(run_id, thread_id=thread)
    assert step.status == "cancelled" and step.cancelled_at
    kept = step.step_details.tool_calls  # type: ignore[union-attr]
    assert [c.id for c in kept] == list(streamed)[:len(kept)] and kept
    assert kept[0].function.name == "get_weather"


def test_a_content_filter_stop_leaves_the_message_incomplete(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model,
                                      Reply("I cannot", finish_reason="content_filter"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert message.status == "incomplete"
    assert message.incomplete_details.reason == "content_filter"
    assert message.content[0].text.value == "I cannot"


def test_an_empty_answer_is_a_message_with_empty_text(client: OpenAI,
                                                      fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply(""))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    handler, run = _stream(client, thread.id, assistant.id)
    assert run.status == "completed"
    assert "thread.message.completed" in handler.order
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert message.role == "assistant" and message.content[0].text.value == ""


def test_a_run_failing_before_its_first_token_leaves_no_message(
        server: ServerProcess, client: OpenAI, fake_model: FakeModelServer) -> None:
    """A text answer's message is announced while the model works (its first token then
    comes alone); a run that fails before that token removes it, and its step, without an
    event that closes them: nothing stored is left of an answer that never began."""
    assistant, model = scripted_assistant(client, fake_model, Error(400), Reply("fine"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    events = sse_events(f"{server.base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    assert event_names(events) == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
        "thread.message.in_progress", "thread.run.failed", "done"]
    run = events[-2][1]
    assert run["last_error"]["code"] == "invalid_prompt"
    assert [m.role for m in client.beta.threads.messages.list(thread.id)] == ["user"]
    assert list(client.beta.threads.runs.steps.list(run["id"], thread_id=thread.id)) == []
    assert client.beta.threads.runs.retrieve(run["id"], thread_id=thread.id).usage is not None
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"
    assert fake_model.requests(model)[-1]["messages"] == [{"role": "user", "content": "x"}]


def test_a_run_cancelled_before_its_first_token_leaves_no_message(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Hang(30))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    seen: list[str] = []
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=handler) as stream:
        for event in stream:
            seen.append(event.event)
            if event.event == "thread.run.created":
                run_id = event.data.id
            if event.event == "thread.message.in_progress":
                client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
    assert seen[-2:] == ["thread.run.cancelling", "thread.run.cancelled"]
    assert "thread.message.incomplete" not in seen and handler.errors == []
    assert wait_for_status(client, thread.id, run_id, {"cancelled"}).status == "cancelled"
    assert [m.role for m in client.beta.threads.messages.list(thread.id)] == ["user"]
    assert list(client.beta.threads.runs.steps.list(run_id, thread_id=thread.id)) == []


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
                       "DwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_image_files_reach_the_model_as_images(client: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    image = client.files.create(file=("dot.png", PNG), purpose="vision")
    gone = client.files.create(file=("gone.png", PNG), purpose="vision")
    assistant, model = scripted_assistant(client, fake_model, Reply("A dot."))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_file", "image_file": {"file_id": image.id, "detail": "high"}},
        {"type": "image_file", "image_file": {"file_id": gone.id}}]}])
    client.files.delete(gone.id)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"
    (sent,) = fake_model.requests(model)[-1]["messages"]
    assert sent["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "detail": "high"}},
        {"type": "text", "text": f"[image file {gone.id}: not available]"}]


def test_reasoning_models_get_their_own_parameters(client: OpenAI,
                                                   fake_model: FakeModelServer) -> None:
    """OpenAI's reasoning models (o1, o3, gpt-5, ...) refuse max_tokens and a temperature:
    they get max_completion_tokens and reasoning_effort (the assistant's unless the run's)."""
    model = f"o3-mini-{uuid.uuid4().hex[:8]}"
    fake_model.script(model, Reply("Thought it over."), Reply("Again."))
    assistant = client.beta.assistants.create(model=model, reasoning_effort="high")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id,
                                                   max_completion_tokens=2000)
    assert run.status == "completed" and run.reasoning_effort == "high"
    sent = fake_model.requests(model)[-1]
    assert sent["max_completion_tokens"] == 2000 and sent["reasoning_effort"] == "high"
    assert not {"max_tokens", "temperature", "top_p"} & set(sent)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id,
                                                   reasoning_effort="low")
    assert run.reasoning_effort == "low"
    assert fake_model.requests(model)[-1]["reasoning_effort"] == "low"


def test_other_models_keep_max_tokens_and_their_own_default_temperature(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    """temperature and top_p of 1.0 (the API's default, which every assistant shows) leave
    the model's own default; other values are sent."""
    assistant, model = scripted_assistant(client, fake_model, Reply("a"), Reply("b"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                             max_completion_tokens=300)
    sent = fake_model.requests(model)[-1]
    assert sent["max_tokens"] == 300
    assert not {"max_completion_tokens", "temperature", "top_p", "reasoning_effort"} & set(sent)
    client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                             temperature=0.2, top_p=0.9)
    sent = fake_model.requests(model)[-1]
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.9)


def test_a_spent_completion_budget_ends_the_run_without_another_model_call(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    long_note = {"text": "word " * 300}  # about 380 completion tokens
    assistant, model = scripted_assistant(
        client, fake_model, ToolCalls([Call("take_note", long_note)]), Reply("Noted."),
        tools=[NOTE_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "note it"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id,
                                                   max_completion_tokens=256)
    assert run.status == "requires_action"
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id,
                                                           "output": "ok"}])
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage.completion_tokens > 256
    assert len(fake_model.requests(model)) == 1
