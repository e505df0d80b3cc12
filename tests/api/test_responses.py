"""The Responses API through the official SDK: create, chaining by previous_response_id,
store, streams checked against OpenAI's event schemas, function calls, background and cancel,
resumed streams, input items and input tokens."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.responses_support import check_event, check_schema, scripted_model
from vtai.testing import Call, Error, FakeModelServer, Reply, ToolCalls

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def _sent(fake_model: FakeModelServer, model: str, index: int = -1) -> dict[str, Any]:
    """The chat completion request the fake model received for ``model``."""
    return fake_model.requests(model)[index]


def test_a_response_answers_its_input(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Hello there."))
    response = client.responses.create(model=model, input="Hi", instructions="Be brief.",
                                       metadata={"k": "v"}, user="u-1")
    assert response.status == "completed" and response.output_text == "Hello there."
    assert response.object == "response" and response.model == model
    assert response.instructions == "Be brief." and response.metadata == {"k": "v"}
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + \
        response.usage.output_tokens
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.status == "completed" and message.id.startswith("msg_")
    sent = _sent(fake_model, model)
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]
    check_schema(client.responses.with_raw_response.retrieve(response.id).http_response.json(),
                 "Response")
    assert client.responses.retrieve(response.id).output_text == "Hello there."


def test_previous_response_id_carries_the_history(client: OpenAI,
                                                  fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("First answer."), Reply("Second answer."))
    first = client.responses.create(model=model, input="One", instructions="Old rules.")
    second = client.responses.create(model=model, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Two"}]}],
        previous_response_id=first.id, instructions="New rules.")
    assert second.previous_response_id == first.id
    assert _sent(fake_model, model)["messages"] == [
        {"role": "system", "content": "New rules."},  # (instructions are not carried over)
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Two"}]


def test_a_response_not_stored_is_not_found_afterwards(client: OpenAI,
                                                       fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Ephemeral."))
    response = client.responses.create(model=model, input="Hi", store=False)
    assert response.output_text == "Ephemeral." and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input="Again", previous_response_id=response.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input="x", store=False, background=True)
    assert err.value.body["param"] == "store"  # type: ignore[index]


def test_the_stream_follows_openais_events(client: OpenAI,
                                           fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Streamed words here.", chunk_size=4))
    with client.responses.stream(model=model, input="Hi") as stream:
        events = [event for event in stream]
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert kinds.count("response.output_text.delta") >= 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        check_event(event.model_dump(mode="json", exclude_unset=True))
    assert final.output_text == "Streamed words here." and final.status == "completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "Streamed words here."


def test_function_calls_end_the_response_and_their_outputs_continue_it(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, ToolCalls([Call("get_weather", {"city": "Paris"})]),
                           Reply("It is sunny in Paris."))
    with client.responses.stream(model=model, input="Weather in Paris?",
                                 tools=[WEATHER]) as stream:  # type: ignore[list-item]
        events = [event for event in stream]
        first = stream.get_final_response()
    for event in events:
        check_event(event.model_dump(mode="json", exclude_unset=True))
    assert first.status == "completed"
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city":"Paris"}' and call.status == "completed"
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == '{"city":"Paris"}'
    assert _sent(fake_model, model)["tools"][0]["function"]["name"] == "get_weather"

    with pytest.raises(openai.BadRequestError):  # the call's output is missing
        client.responses.create(model=model, input="And?", previous_response_id=first.id,
                                tools=[WEATHER])  # type: ignore[list-item]
    second = client.responses.create(
        model=model, previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": '{"sky": "clear"}'}])
    assert second.output_text == "It is sunny in Paris."
    messages = _sent(fake_model, model)["messages"]
    assert messages[-2] == {"role": "assistant", "tool_calls": [{
        "id": call.call_id, "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id,
                            "content": '{"sky": "clear"}'}


def test_an_output_for_no_call_is_refused(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input=[
            {"type": "function_call_output", "call_id": "call_nowhere", "output": "x"}])
    assert "call_nowhere" in err.value.message


def test_an_upstream_error_fails_the_response(client: OpenAI,
                                              fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Error(400, "bad prompt"))
    response = client.responses.create(model=model, input="Hi")
    assert response.status == "failed" and response.error is not None
    assert response.error.code == "invalid_prompt" and "bad prompt" in response.error.message
    with client.responses.stream(model=scripted_model(fake_model, Error(400, "no")),
                                 input="Hi") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed"


def test_max_output_tokens_makes_it_incomplete(client: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Cut sho", finish_reason="length"))
    response = client.responses.create(model=model, input="Hi", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert _sent(fake_model, model)["max_tokens"] == 16


def test_text_format_and_sampling_reach_the_model(client: OpenAI,
                                                  fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply('{"a": 1}'))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    response = client.responses.create(
        model=model, input="JSON please", temperature=0.2, top_p=0.5,
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema,
                         "strict": True}})
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]
    sent = _sent(fake_model, model)
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.5


def test_background_responses_can_be_cancelled_and_polled(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("slow " * 50, chunk_size=5, chunk_delay=0.2))
    response = client.responses.create(model=model, input="Hi", background=True)
    assert response.status in ("queued", "in_progress") and response.background is True
    cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(response.id).status == "cancelled"
    again = client.responses.cancel(response.id)  # a finished one is returned as it is
    assert again.status == "cancelled"

    quick = scripted_model(fake_model, Reply("Done."))
    foreground = client.responses.create(model=quick, input="Hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(foreground.id)


def test_a_background_stream_resumes_after_a_sequence_number(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("one two three four", chunk_size=4))
    with client.responses.stream(model=model, input="Hi", background=True) as stream:
        events = [event for event in stream]
    assert events[0].type == "response.created" and events[1].type == "response.queued"
    assert events[-1].type == "response.completed"
    middle = events[len(events) // 2].sequence_number
    resumed = list(client.responses.retrieve(events[0].response.id, stream=True,
                                             starting_after=middle))
    assert [e.sequence_number for e in resumed] == \
        [e.sequence_number for e in events if e.sequence_number > middle]


def test_input_items_and_input_tokens(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("ok"))
    response = client.responses.create(model=model, input=[
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": "First"},
        {"role": "user", "content": "Second"}])
    listed = client.responses.input_items.list(response.id)
    texts = [item.content[0].text for item in listed.data]  # type: ignore[union-attr]
    assert texts == ["Second", "First", "Rules."]  # newest first by default
    ascending = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.content[0].text for i in ascending.data] == ["Rules.", "First"]  # type: ignore
    assert ascending.has_more is True
    assert _sent(fake_model, model)["messages"][0] == {"role": "system", "content": "Rules."}
    counted = client.responses.input_tokens.count(model=model, input="Hello there")
    assert counted.input_tokens > 0


def test_a_deleted_response_is_gone(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("bye"))
    response = client.responses.create(model=model, input="Hi")
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_bad_requests_get_openais_errors(client: OpenAI, server: Any) -> None:
    bad = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": 3},
                     headers={"Authorization": "Bearer x"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input="x", previous_response_id="resp_x",
                                conversation="conv_x")


def test_reasoning_is_kept_as_a_reasoning_item(client: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Four.", reasoning="Two and two make four."))
    with client.responses.stream(model=model, input="2+2?",
                                 reasoning={"effort": "low"}) as stream:
        events = [event for event in stream]
        final = stream.get_final_response()
    for event in events:
        check_event(event.model_dump(mode="json", exclude_unset=True))
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content[0].text == "Two and two make four."  # type: ignore[index]
    assert message.content[0].text == "Four."  # type: ignore[union-attr]
    kinds = [e.type for e in events]
    assert kinds.index("response.reasoning_text.done") < \
        kinds.index("response.output_text.delta")
    assert _sent(fake_model, model)["reasoning_effort"] == "low"


def test_logprobs_when_included(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("Yes no"))
    response = client.responses.create(model=model, input="?", top_logprobs=2,
                                       include=["message.output_text.logprobs"])
    logprobs = response.output[0].content[0].logprobs  # type: ignore[union-attr]
    assert [p.token for p in logprobs] == ["Yes ", "no"]  # type: ignore[union-attr]
    assert len(logprobs[0].top_logprobs) == 2  # type: ignore[index]
    sent = _sent(fake_model, model)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2


def test_images_and_files_reach_the_model(client: OpenAI,
                                          fake_model: FakeModelServer) -> None:
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8B"
                           "QDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    image = client.files.create(file=("dot.png", png), purpose="vision")
    notes = client.files.create(file=("notes.txt", b"The code word is heliotrope."),
                                purpose="user_data")
    model = scripted_model(fake_model, Reply("Seen."))
    client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Look:"},
        {"type": "input_image", "file_id": image.id, "detail": "low"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
        {"type": "input_file", "file_id": notes.id},
        {"type": "input_file", "filename": "inline.txt",
         "file_data": "data:text/plain;base64," + base64.b64encode(b"Inline text.").decode()},
    ]}])
    parts = _sent(fake_model, model)["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Look:"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1]["image_url"]["detail"] == "low"
    assert parts[2]["image_url"]["url"] == "https://example.com/cat.png"
    assert "heliotrope" in parts[3]["text"] and "notes.txt" in parts[3]["text"]
    assert "Inline text." in parts[4]["text"]


def test_tool_choice_and_max_tool_calls(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, ToolCalls([Call("get_weather", {"city": "Oslo"})]))
    client.responses.create(model=model, input="x", tools=[WEATHER],  # type: ignore[list-item]
                            tool_choice={"type": "function", "name": "get_weather"},
                            parallel_tool_calls=False)
    sent = _sent(fake_model, model)
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=model, input="x", tools=[WEATHER],  # type: ignore
                                tool_choice={"type": "function", "name": "other"})

    code = {"type": "code_interpreter", "container": {"type": "auto"}}
    model = scripted_model(fake_model,
                           ToolCalls([Call("code_interpreter", {"code": "print(1)"})]),
                           Reply("Stopped calling."))
    response = client.responses.create(model=model, input="x", tools=[code],  # type: ignore
                                       max_tool_calls=1)
    assert [item.type for item in response.output] == ["code_interpreter_call", "message"]
    assert _sent(fake_model, model)["tool_choice"] == "none"  # no calls left


def test_stored_fields_come_back(client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("ok"))
    response = client.responses.create(model=model, input="x", safety_identifier="s-1",
                                       prompt_cache_key="k-1", truncation="auto",
                                       max_output_tokens=100)
    again = client.responses.retrieve(response.id)
    assert again.safety_identifier == "s-1" and again.prompt_cache_key == "k-1"
    assert again.truncation == "auto" and again.max_output_tokens == 100


def test_deleting_a_response_under_way_ends_its_stream(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("slow " * 100, chunk_size=5, chunk_delay=0.1))
    with client.responses.stream(model=model, input="Hi") as stream:
        response_id = ""
        for event in stream:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                client.responses.delete(response_id)
                break
        rest = [event.type for event in stream]  # the stream ends: it does not hang
    assert "response.completed" not in rest
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)
