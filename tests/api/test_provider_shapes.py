"""What real clients and real model servers showed: a failed run's stream as the SDK's helpers
read it, tool names streamed in every style (llama-cpp-python repeats the whole name in each
chunk), an empty HTTP 200 answer, a forced tool_choice, and assistant messages without
``"content": null`` (which llama-cpp-python's server refuses; the suite's fake model does too)."""

from __future__ import annotations

from typing import Any

from openai import AssistantEventHandler, OpenAI

from tests.api.runs_support import WEATHER_TOOL, scripted_assistant
from vtai.testing import Call, Empty, Error, FakeModelServer, Reply, ToolCalls


class Handler(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.done_calls: list[Any] = []
        self.errors: list[Exception] = []

    def on_tool_call_done(self, tool_call: Any) -> None:
        self.done_calls.append(tool_call)

    def on_exception(self, exception: Exception) -> None:
        self.errors.append(exception)


def _stream(client: OpenAI, assistant_id: str, **create: Any) -> tuple[Handler, Any]:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    handler = Handler()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id,
                                         event_handler=handler, **create) as stream:
        stream.until_done()  # (raised APIError on the `error` event that followed a failure)
        return handler, stream.get_final_run()


def test_a_failed_run_ends_its_stream_for_the_sdk_helpers(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Error(400, "bad prompt"))
    handler, run = _stream(client, assistant.id)
    assert run.status == "failed" and handler.errors == []
    assert run.last_error.code == "invalid_prompt" and "bad prompt" in run.last_error.message


def test_a_function_name_repeated_in_every_chunk_reaches_the_client_once(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    calls = ToolCalls([Call("get_weather", {"city": "Paris"}, repeat_name=True)])
    assistant, _ = scripted_assistant(client, fake_model, calls, tools=[WEATHER_TOOL])
    handler, run = _stream(client, assistant.id)
    assert run.status == "requires_action"
    required = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in required] == ["get_weather"]
    assert required[0].function.arguments == '{"city":"Paris"}'
    assert [c.function.name for c in handler.done_calls] == ["get_weather"]


def test_a_built_in_tool_name_repeated_in_every_chunk_runs_the_tool(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    calls = ToolCalls([Call("file_search", {"queries": ["orchard"]}, repeat_name=True)])
    assistant, _ = scripted_assistant(client, fake_model, calls, Reply("Nothing found."),
                                      tools=[{"type": "file_search"}])
    _, run = _stream(client, assistant.id)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
    tool_calls = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    assert [c.type for c in tool_calls] == ["file_search"]


def test_a_tool_the_run_does_not_offer_fails_the_run_clearly(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    calls = ToolCalls([Call("launch_rockets", {"count": 3})])
    assistant, _ = scripted_assistant(client, fake_model, calls, tools=[WEATHER_TOOL])
    _, run = _stream(client, assistant.id)
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert "'launch_rockets'" in run.last_error.message
    assert "'get_weather'" in run.last_error.message  # what was offered


def test_an_empty_answer_is_asked_again(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Empty(), Reply("here now"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed" and len(fake_model.requests(model)) == 2
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert message.content[0].text.value == "here now"  # type: ignore[union-attr]


def test_an_answer_empty_every_time_fails_the_run_saying_so(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    # (the test servers retry twice: three empty answers)
    assistant, model = scripted_assistant(client, fake_model, Empty(), Empty(), Empty())
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "failed" and len(fake_model.requests(model)) == 3
    assert "sent nothing" in run.last_error.message
    assert [m.role for m in client.beta.threads.messages.list(thread.id)] == ["user"]


def test_a_forced_function_applies_to_the_first_model_call_only(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    """After the tool outputs the model answers freely (a forced choice sent on every call
    made the run call the tool forever), and the assistant message with the calls goes
    without "content": null."""
    calls = ToolCalls([Call("get_weather", {"city": "Paris"})])
    assistant, model = scripted_assistant(client, fake_model, calls, Reply("Sunny."),
                                          tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice="required")
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id,
                                                           "output": "sunny"}])
    assert run.status == "completed", run.last_error
    first, second = fake_model.requests(model)
    assert first["tool_choice"] == "required" and "tool_choice" not in second
    answer = second["messages"][-2]
    assert answer["role"] == "assistant" and answer["tool_calls"] and "content" not in answer
    assert run.tool_choice == "required"  # (the run shows what was asked)


def test_a_forced_built_in_tool_applies_to_the_first_model_call_only(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    calls = ToolCalls([Call("file_search", {"queries": ["orchard"]})])
    assistant, model = scripted_assistant(client, fake_model, calls, Reply("Nothing."),
                                          tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Search."}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "file_search"})
    assert run.status == "completed", run.last_error
    first, second = fake_model.requests(model)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}
    assert "tool_choice" not in second
