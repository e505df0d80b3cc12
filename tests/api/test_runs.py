"""Runs through the official SDK and raw SSE, against the fake model as upstream."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import httpx
import openai
import pytest
from openai import AssistantEventHandler, OpenAI

from tests.api.runs_support import (
    WEATHER_TOOL,
    event_names,
    scripted_assistant,
    wait_for_status,
    wait_for_thread_run,
)
from tests.support import ServerProcess, sse_events
from vtai.server.store import writes
from vtai.server.store.postgres import turn_lock
from vtai.testing import Call, Drop, Echo, Error, FakeModelServer, Hang, Reply, ToolCalls

TEXT_EVENTS = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress", "thread.message.delta",
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done",
]


def test_create_and_poll_text(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Reply("Hello, human."),
                                          instructions="Be kind.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"
    assert run.id.startswith("run_") and run.object == "thread.run"
    assert run.started_at and run.completed_at and run.failed_at is None
    assert run.model == model and run.instructions == "Be kind."
    assert run.usage and run.usage.total_tokens == (
        run.usage.prompt_tokens + run.usage.completion_tokens) > 0
    messages = list(client.beta.threads.messages.list(thread.id))
    assert messages[0].role == "assistant" and messages[0].run_id == run.id
    assert messages[0].assistant_id == assistant.id
    assert messages[0].content[0].text.value == "Hello, human."
    assert messages[0].status == "completed"
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id))
    assert [s.type for s in steps] == ["message_creation"]
    assert steps[0].step_details.message_creation.message_id == messages[0].id
    assert steps[0].status == "completed" and steps[0].usage is not None
    step = client.beta.threads.runs.steps.retrieve(steps[0].id, thread_id=thread.id,
                                                   run_id=run.id)
    assert step == steps[0]
    sent = fake_model.requests(model)[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be kind."},
                                {"role": "user", "content": "Hi"}]
    assert run.id in {r.id for r in client.beta.threads.runs.list(thread.id)}
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id) == run


def test_exact_sse_order_for_text(server: ServerProcess, client: OpenAI,
                                  fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("one two three"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    events = sse_events(f"{server.base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    assert event_names(events) == TEXT_EVENTS
    deltas = [d for n, d in events if n == "thread.message.delta"]
    assert "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas) == "one two three"
    assert all(d["delta"]["content"][0]["index"] == 0 for d in deltas)
    assert events[-1] == ("done", "[DONE]")
    run_id = events[0][1]["id"]
    stored = client.beta.threads.runs.retrieve(run_id, thread_id=thread.id)
    assert stored.model_dump() == events[-2][1]  # what was streamed is what is stored


class _SlowReader(http.client.HTTPConnection):
    """A client with a small receive buffer, so that a stream it does not read soon fills
    the server's buffers and the server's writes have to wait."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def test_a_client_reading_late_gets_the_whole_stream_in_order(
        server: ServerProcess, client: OpenAI, fake_model: FakeModelServer) -> None:
    text = "".join(f"{n:07d} " for n in range(1_000_000))  # 8 MB in 4,000 deltas
    assistant, _ = scripted_assistant(client, fake_model, Reply(text, chunk_size=2_000))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "all of it"}])
    conn = _SlowReader("127.0.0.1", server.port, timeout=120)
    try:
        conn.request("POST", f"/v1/threads/{thread.id}/runs",
                     json.dumps({"assistant_id": assistant.id, "stream": True}),
                     {"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        # The run answers meanwhile; its stream waits in the buffers.
        wait_for_thread_run(client, thread.id, {"completed"}, timeout=60)
        body = response.read().decode()
    finally:
        conn.close()
    events = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            data = lines["data"]
            events.append((lines["event"], data if data == "[DONE]" else json.loads(data)))
    assert event_names(events) == TEXT_EVENTS
    deltas = [d for n, d in events if n == "thread.message.delta"]
    assert len(deltas) == 4_000
    assert "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas) == text
    run = client.beta.threads.runs.retrieve(events[0][1]["id"], thread_id=thread.id)
    assert run.status == "completed"


def test_sdk_stream_helper(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("streamed words here"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    seen: list[str] = []

    class Handler(AssistantEventHandler):
        def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
            seen.append(delta.value)

    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=Handler()) as stream:
        stream.until_done()
        final = stream.get_final_messages()
        assert stream.current_run.status == "completed"
    assert "".join(seen) == "streamed words here"
    assert final[0].content[0].text.value == "streamed words here"


def test_function_call_round_trip_with_parallel_calls(
        server: ServerProcess, client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Oslo"})]),
        Reply("Paris is sunny, Oslo is snowy."),
        tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather?"}])
    events = sse_events(f"{server.base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    assert event_names(events) == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta",
        "thread.run.requires_action", "done"]
    run = events[-2][1]
    calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"}, {"city": "Oslo"}]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert run["expires_at"] > run["created_at"]
    deltas = [d["delta"]["step_details"]["tool_calls"][0]
              for n, d in events if n == "thread.run.step.delta"]
    assert {d["index"] for d in deltas} == {0, 1}
    assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == 1) == \
        calls[1]["function"]["arguments"]

    with pytest.raises(openai.BadRequestError):  # an active run blocks new messages
        client.beta.threads.messages.create(thread.id, role="user", content="more")
    with pytest.raises(openai.BadRequestError):  # and new runs
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)

    outputs = [{"tool_call_id": calls[0]["id"], "output": "sunny"},
               {"tool_call_id": calls[1]["id"], "output": "snowy"}]
    events = sse_events(
        f"{server.base_url}/threads/{thread.id}/runs/{run['id']}/submit_tool_outputs",
        {"tool_outputs": outputs, "stream": True})
    assert event_names(events) == [
        "thread.run.step.completed", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
        "thread.message.in_progress", "thread.message.delta", "thread.message.completed",
        "thread.run.step.completed", "thread.run.completed", "done"]
    prompt = fake_model.requests(model)[-1]["messages"]
    assert prompt[-3]["tool_calls"][0]["id"] == calls[0]["id"]
    assert prompt[-2:] == [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "snowy"}]
    steps = list(client.beta.threads.runs.steps.list(run["id"], thread_id=thread.id,
                                                     order="asc"))
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert [c.function.output for c in steps[0].step_details.tool_calls] == ["sunny", "snowy"]
    assert [c.function.name for c in steps[0].step_details.tool_calls] == ["get_weather"] * 2
    final = client.beta.threads.runs.retrieve(run["id"], thread_id=thread.id)
    assert final.status == "completed" and final.required_action is None

    # The next run's prompt is read together with the run's start (assistant, thread, active
    # run): it holds the earlier run's calls, their outputs and its answer, in order.
    fake_model.script(model, Reply("Noted."))
    client.beta.threads.messages.create(thread.id, role="user", content="And tomorrow?")
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                     assistant_id=assistant.id)
    assert again.status == "completed"
    replayed = fake_model.requests(model)[-1]["messages"]
    assert replayed[0] == {"role": "user", "content": "Weather?"}
    assert [c["id"] for c in replayed[1]["tool_calls"]] == [c["id"] for c in calls]
    assert replayed[2:] == [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "snowy"},
        {"role": "assistant", "content": "Paris is sunny, Oslo is snowy."},
        {"role": "user", "content": "And tomorrow?"}]


def test_submit_tool_outputs_and_poll(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "Rome"})]),
                                      Reply("Warm."), tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Rome?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "25C"}])
    assert done.status == "completed"
    assert next(iter(client.beta.threads.messages.list(thread.id))).content[0].text.value == \
        "Warm."


def test_a_runs_usage_is_the_sum_of_its_steps(client: OpenAI,
                                              fake_model: FakeModelServer) -> None:
    """Across a function call's round trip: the turn that ends the run adds its own step's
    usage to the usage of the steps stored by the turns before it."""
    answer = {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47}
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "Oslo"})]),
                                      Reply("Cold.", usage=answer), tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "requires_action" and run.usage is None
    fresh, _ = scripted_assistant(client, fake_model, Reply("Hi.", usage=answer))
    alone = client.beta.threads.create_and_run_poll(
        assistant_id=fresh.id, thread={"messages": [{"role": "user", "content": "Hi"}]})
    assert alone.usage is not None and alone.usage.model_dump() == answer
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    with client.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "-5C"}]) as stream:
        stream.until_done()
        streamed = stream.current_run
    done = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id,
                                                     order="asc"))
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert steps[1].usage is not None and steps[1].usage.model_dump() == answer
    first = steps[0].usage
    assert first is not None and first.total_tokens > 0
    assert done.status == "completed" and done.usage is not None
    assert done.usage.model_dump() == {
        key: getattr(first, key) + answer[key] for key in answer}
    assert streamed is not None and streamed.usage == done.usage


def test_submit_tool_outputs_stream_helper(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "Lima"})]),
                                      Reply("Mild."), tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Lima?"}])
    with client.beta.threads.runs.stream(thread_id=thread.id,
                                         assistant_id=assistant.id) as stream:
        stream.until_done()
        run = stream.current_run
    assert run.status == "requires_action"
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    with client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=thread.id, run_id=run.id,
            tool_outputs=[{"tool_call_id": call_id, "output": "15C"}]) as stream:
        text = "".join(stream.text_deltas)
        assert stream.current_run.status == "completed"
    assert text == "Mild."


def test_tool_outputs_are_validated(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("get_weather", {"city": "A"}), Call("get_weather", {"city": "B"})]),
        Reply("ok"), tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    first, second = (c.id for c in run.required_action.submit_tool_outputs.tool_calls)
    bad = [
        [{"tool_call_id": first, "output": "x"}],  # one missing
        [{"tool_call_id": first, "output": "x"}, {"tool_call_id": first, "output": "y"}],
        [{"tool_call_id": first, "output": "x"}, {"tool_call_id": "call_nope", "output": "y"}],
    ]
    for outputs in bad:
        with pytest.raises(openai.BadRequestError):
            client.beta.threads.runs.submit_tool_outputs(run_id=run.id, thread_id=thread.id,
                                                         tool_outputs=outputs)
    assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == \
        "requires_action"
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id,
        tool_outputs=[{"tool_call_id": second, "output": "b"},
                      {"tool_call_id": first, "output": "a"}])
    assert done.status == "completed"
    with pytest.raises(openai.BadRequestError):  # no longer waiting for outputs
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": first}])


def test_cancel_mid_stream(server: ServerProcess, client: OpenAI,
                           fake_model: FakeModelServer) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    assistant, _ = scripted_assistant(client, fake_model, Reply(words, chunk_delay=0.02))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "talk"}])
    names: list[str] = []
    run_id = None
    with httpx.stream("POST", f"{server.base_url}/threads/{thread.id}/runs",
                      json={"assistant_id": assistant.id, "stream": True}, timeout=30) as resp:
        for line in resp.iter_lines():
            if not line.startswith("event:"):
                if run_id is None and line.startswith("data:") and names == \
                        ["thread.run.created"]:
                    run_id = json.loads(line[5:])["id"]
                continue
            names.append(line.split(":", 1)[1].strip())
            if names[-1] == "thread.message.delta" and names.count(names[-1]) == 3:
                assert run_id is not None
                cancelling = client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
                assert cancelling.status == "cancelling"
    collapsed = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    assert collapsed[-6:] == ["thread.message.delta", "thread.run.cancelling",
                              "thread.message.incomplete", "thread.run.step.cancelled",
                              "thread.run.cancelled", "done"] or collapsed[-6:] == [
        "thread.run.cancelling", "thread.message.delta", "thread.message.incomplete",
        "thread.run.step.cancelled", "thread.run.cancelled", "done"]
    run = client.beta.threads.runs.retrieve(run_id, thread_id=thread.id)
    assert run.status == "cancelled" and run.cancelled_at
    message = next(iter(client.beta.threads.messages.list(thread.id)))
    assert message.status == "incomplete"
    assert message.incomplete_details.reason == "run_cancelled"
    assert message.content[0].text.value.startswith("w0 w1")
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run_id, thread_id=thread.id)


def test_cancel_while_waiting_for_tool_outputs(client: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "X"})]),
                                      tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "requires_action"
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = wait_for_status(client, thread.id, run.id, {"cancelled"})
    assert run.status == "cancelled"
    assert run.expires_at is None
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id))
    assert [s.status for s in steps] == ["cancelled"]
    assert steps[0].usage is not None and run.usage is not None
    assert run.usage.total_tokens == steps[0].usage.total_tokens > 0
    # the thread takes new messages and runs again
    client.beta.threads.messages.create(thread.id, role="user", content="again")


def test_upstream_error_is_retried(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Error(500), Reply("recovered"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"


def test_a_stream_broken_before_any_token_is_asked_again(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Drop("lost", 0), Reply("again"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed"
    assert len(fake_model.requests(model)) == 2
    message = client.beta.threads.messages.list(thread.id).data[0]
    assert message.content[0].text.value == "again"  # type: ignore[union-attr]


@pytest.mark.parametrize(("failure", "code"), [(Error(500), "server_error"),
                                               (Error(429), "rate_limit_exceeded"),
                                               (Error(400), "invalid_prompt")])
def test_upstream_failure_fails_the_run(server: ServerProcess, client: OpenAI,
                                        fake_model: FakeModelServer, failure: Error,
                                        code: str) -> None:
    assistant, _ = scripted_assistant(client, fake_model, failure, failure, failure, failure)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    events = sse_events(f"{server.base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    names = event_names(events)
    assert names[-2:] == ["thread.run.failed", "done"] and "error" not in names
    failed = events[-2][1]
    assert failed["last_error"]["code"] == code and failed["failed_at"]
    assert failed["expires_at"] is None
    assert failed["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    stored = client.beta.threads.runs.retrieve(failed["id"], thread_id=thread.id)
    assert stored.model_dump() == failed


def test_missing_thread_run_or_step_is_named_in_the_404(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    runs = client.beta.threads.runs
    for call, missing in [
            (lambda: runs.update("run_nope", thread_id="thread_nope", metadata={}), "thread"),
            (lambda: runs.update("run_nope", thread_id=thread.id, metadata={}), "run"),
            (lambda: runs.steps.retrieve("step_nope", thread_id="thread_nope",
                                         run_id="run_nope"), "thread"),
            (lambda: runs.steps.retrieve("step_nope", thread_id=thread.id,
                                         run_id="run_nope"), "run"),
            (lambda: runs.retrieve("run_nope", thread_id="thread_nope"), "thread")]:
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert err.value.body["message"].startswith(f"No {missing} found with id '{missing}_nope'")


def test_a_failed_run_ends_the_sdk_stream_without_raising(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    """As OpenAI's: thread.run.failed ends the stream (an `error` event is the server's own
    failure, on which the SDK raises)."""
    assistant, _ = scripted_assistant(client, fake_model, Error(500), Error(500), Error(500))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    with client.beta.threads.runs.stream(thread_id=thread.id,
                                         assistant_id=assistant.id) as stream:
        stream.until_done()
        assert stream.get_final_run().status == "failed"


def test_dropped_upstream_stream_fails_cleanly(client: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Drop("partial answer ", 2))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "failed" and run.last_error.code == "server_error"
    message = next(iter(client.beta.threads.messages.list(thread.id)))
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_failed"


def test_overrides_reach_the_model(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, instructions="Base.",
                                          temperature=0.3, tools=[WEATHER_TOOL])
    fake_model.script("override-model", Echo())
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, model="override-model",
        additional_instructions="Answer in French.", temperature=0.7, top_p=0.5,
        additional_messages=[{"role": "user", "content": "extra"}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False, max_completion_tokens=500,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "out", "schema": schema, "strict": True}},
        metadata={"run": "1"})
    assert run.status == "completed"
    assert run.model == "override-model" and run.metadata == {"run": "1"}
    assert run.instructions == "Base.\n\nAnswer in French."
    sent = fake_model.requests("override-model")[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Base.\n\nAnswer in French."}
    assert [m["content"] for m in sent["messages"][1:]] == ["first", "extra"]
    assert sent["temperature"] == 0.7 and sent["top_p"] == 0.5
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["max_tokens"] == 500
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": schema, "strict": True}}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert fake_model.requests(model) == []


def test_truncation_last_messages(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Echo())
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": f"message {i}"} for i in range(5)])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2})
    assert run.status == "completed"
    assert run.truncation_strategy.type == "last_messages"
    assert [m["content"] for m in fake_model.requests(model)[-1]["messages"]] == [
        "message 3", "message 4"]


def test_truncation_by_max_prompt_tokens(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Echo())
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": f"{i} " + "word " * 150} for i in range(6)])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=500)
    assert run.status == "completed"
    sent = [m["content"] for m in fake_model.requests(model)[-1]["messages"]]
    assert 1 <= len(sent) < 6 and sent[-1].startswith("5 ")


def test_prompt_over_max_prompt_tokens_makes_the_run_incomplete(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model, Echo())
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": "word " * 3000}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256)
    assert run.status == "incomplete"
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_prompt_tokens"
    assert fake_model.requests(model) == []
    assert [m.role for m in client.beta.threads.messages.list(thread.id)] == ["user"]


def test_completion_limit_makes_the_run_incomplete(client: OpenAI,
                                                   fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model,
                                      Reply("cut short", finish_reason="length"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id,
                                                   max_completion_tokens=256)
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_completion_tokens"
    message = next(iter(client.beta.threads.messages.list(thread.id)))
    assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"


def test_create_thread_and_run(server: ServerProcess, client: OpenAI,
                               fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("a"), Reply("b"))
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}], "metadata": {"t": "1"}})
    assert run.status == "completed"
    assert client.beta.threads.retrieve(run.thread_id).metadata == {"t": "1"}
    events = sse_events(f"{server.base_url}/threads/runs",
                        {"assistant_id": assistant.id, "stream": True,
                         "thread": {"messages": [{"role": "user", "content": "again"}]}})
    assert event_names(events) == ["thread.created", *TEXT_EVENTS]


def test_client_disconnect_leaves_a_completed_run(server: ServerProcess, client: OpenAI,
                                                  fake_model: FakeModelServer) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    assistant, _ = scripted_assistant(client, fake_model, Reply(words, chunk_delay=0.02))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run_id = None
    with httpx.stream("POST", f"{server.base_url}/threads/{thread.id}/runs",
                      json={"assistant_id": assistant.id, "stream": True}, timeout=30) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:") and run_id is None:
                run_id = json.loads(line[5:])["id"]
            if "thread.message.delta" in line:
                break  # hang up mid-stream
    assert run_id is not None
    run = wait_for_status(client, thread.id, run_id, {"completed", "failed"})
    assert run.status == "completed"
    assert next(iter(client.beta.threads.messages.list(thread.id))).content[0].text.value == words


def test_cancel_says_when_to_poll(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Hang(30))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    raw = client.beta.threads.runs.with_raw_response.cancel(run.id, thread_id=thread.id)
    assert int(raw.headers["openai-poll-after-ms"]) > 0
    assert raw.parse().status == "cancelling"
    assert wait_for_status(client, thread.id, run.id, {"cancelled"}).status == "cancelled"


def test_background_run_can_be_polled(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("slow", first_token_delay=0.5))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    raw = client.beta.threads.runs.with_raw_response.create(thread_id=thread.id,
                                                            assistant_id=assistant.id)
    assert int(raw.headers["openai-poll-after-ms"]) > 0
    run = raw.parse()
    assert run.status == "queued"
    seen = {wait_for_status(client, thread.id, run.id, {"in_progress", "completed"}).status}
    assert "in_progress" in seen or "completed" in seen
    assert wait_for_status(client, thread.id, run.id, {"completed"}).status == "completed"


def test_modify_run_and_unknown_ids(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("x"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    updated = client.beta.threads.runs.update(run.id, thread_id=thread.id,
                                              metadata={"k": "v"})
    assert updated.metadata == {"k": "v"} and updated.status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve("run_missing", thread_id=thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_missing")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id="thread_missing", assistant_id=assistant.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.steps.retrieve("step_missing", thread_id=thread.id,
                                                run_id=run.id)
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.steps.list(run.id, thread_id=thread.id,
                                            include=["bogus"])  # type: ignore[list-item]
    listed = client.beta.threads.runs.steps.list(
        run.id, thread_id=thread.id,
        include=["step_details.tool_calls[*].file_search.results[*].content"])
    assert len(listed.data) == 1


def test_deleting_the_thread_removes_its_runs(client: OpenAI,
                                              fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Reply("x"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)


def test_concurrent_runs_on_many_threads(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, model = scripted_assistant(client, fake_model)
    fake_model.script(model, *[Reply(f"answer {i}", chunk_delay=0.005) for i in range(8)])
    results: list[str] = []

    def one(i: int) -> None:
        thread = client.beta.threads.create(messages=[{"role": "user", "content": f"q{i}"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                       assistant_id=assistant.id)
        results.append(run.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["completed"] * 8


def test_hanging_upstream_can_be_cancelled(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(client, fake_model, Hang(30))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    wait_for_status(client, thread.id, run.id, {"in_progress"})
    started = time.monotonic()
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = wait_for_status(client, thread.id, run.id, {"cancelled"})
    assert run.status == "cancelled" and time.monotonic() - started < 10


def test_a_message_added_while_a_run_is_being_started_waits_for_it(
        server: ServerProcess, client: OpenAI) -> None:
    """On PostgreSQL, adding a message takes its turn after a run being started on the same
    thread (whose transaction holds the thread's lock), so it sees that run once it is
    active. SQLite's write transactions take turns anyway."""
    url = server.env.get("VTAI_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("the lock is PostgreSQL's; SQLite's writes take turns in the process")
    import psycopg

    thread = client.beta.threads.create()
    added: list[str] = []
    adder = threading.Thread(target=lambda: added.append(client.beta.threads.messages.create(
        thread.id, role="user", content="x").id))
    with psycopg.connect(url.replace("+asyncpg", "")) as conn:  # a run's start, held open
        conn.execute("SELECT pg_advisory_xact_lock(%s)",
                     (turn_lock(writes.thread_turn(thread.id)),))
        adder.start()
        adder.join(1.5)
        assert not added  # waiting for its turn
    adder.join(30)  # the transaction committed: the lock is released
    assert len(added) == 1
    assert [m.id for m in client.beta.threads.messages.list(thread.id)] == added


def test_one_active_run_per_thread_when_runs_are_created_at_once(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    """Runs created on one thread at the same moment: one is accepted, the others get 400,
    and the additional messages of those refused are not stored."""
    creates = 8
    assistant, _ = scripted_assistant(
        client, fake_model, *[Reply("late", first_token_delay=5.0) for _ in range(creates)])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    barrier = threading.Barrier(creates)
    accepted: list[str] = []
    refused: list[int] = []
    extras: dict[str, str] = {}

    def create(index: int) -> None:
        # half of them add a message (stored with the run, in the thread's turn)
        extra = [{"role": "user", "content": f"extra {index}"}] if index % 2 else []
        barrier.wait()
        try:
            run = client.beta.threads.runs.create(
                thread_id=thread.id, assistant_id=assistant.id, additional_messages=extra)
            accepted.append(run.id)
            extras[run.id] = f"extra {index}" if extra else ""
        except openai.BadRequestError as err:
            assert "already has an active run" in err.message
            refused.append(err.status_code)

    workers = [threading.Thread(target=create, args=(i,)) for i in range(creates)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(accepted) == 1 and refused == [400] * (creates - 1)
    runs = list(client.beta.threads.runs.list(thread_id=thread.id))
    assert [run.id for run in runs] == accepted
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(
        thread.id, order="asc") if m.role == "user"]
    assert texts == ["x", extras[accepted[0]]] if extras[accepted[0]] else texts == ["x"]
    client.beta.threads.runs.cancel(thread_id=thread.id, run_id=accepted[0])
    assert wait_for_status(client, thread.id, accepted[0], {"cancelled"}).status == "cancelled"


def _sse_with_ids(response: httpx.Response) -> list[tuple[str, str, str]]:
    """(id, event, data) of an SSE response."""
    events: list[tuple[str, str, str]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in fields:
                events.append((fields.get("id", ""), fields["event"], fields.get("data", "")))
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return events


def test_a_lost_stream_is_resumed_after_the_last_event_seen(
        server: ServerProcess, client: OpenAI, fake_model: FakeModelServer) -> None:
    """The events extension (docs/operations.md): the stored stream, from the Last-Event-ID
    on, is what was streamed (stored by the event log's batches)."""
    assistant, _ = scripted_assistant(client, fake_model, Reply("a b c d e f"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    with httpx.stream("POST", f"{server.base_url}/threads/{thread.id}/runs", timeout=30,
                      json={"assistant_id": assistant.id, "stream": True}) as response:
        streamed = _sse_with_ids(response)
    run_id = json.loads(streamed[0][2])["id"]
    url = f"{server.base_url}/threads/{thread.id}/runs/{run_id}/events"
    with httpx.stream("GET", url, headers={"Last-Event-ID": streamed[4][0]},
                      timeout=30) as response:
        assert response.status_code == 200
        resumed = _sse_with_ids(response)
    assert [(i, e, json.loads(d)) for i, e, d in resumed[:-1]] == \
        [(i, e, json.loads(d)) for i, e, d in streamed[5:-1]]
    assert resumed[-1][1:] == ("done", "[DONE]")
    with httpx.stream("GET", url, timeout=30) as response:  # the whole stream
        assert [e for _, e, _ in _sse_with_ids(response)] == [e for _, e, _ in streamed]
    for bad in ({"headers": {"Last-Event-ID": "garbage-id"}}, {"params": {"after": "not-an-id"}}):
        error = httpx.get(url, timeout=30, **bad).json()["error"]  # type: ignore[arg-type]
        assert error["param"] in ("Last-Event-ID", "after")
        assert error["message"].startswith("Invalid event id")
