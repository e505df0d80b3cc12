"""Every failure answers in OpenAI's error shape, with the SDK's matching exception."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support import ServerProcess


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_metadata_limits(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="m", metadata={f"k{i}": "v" for i in range(17)})
    assert err.value.body["param"] == "metadata"
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.create(metadata={"k": "v" * 513})
    assert err.value.body["param"] == "metadata"
    assert "513" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.create(metadata={"k" * 65: "v"})
    ok = client.beta.threads.create(metadata={f"k{i}": "v" * 512 for i in range(16)})
    assert len(ok.metadata) == 16


def test_unknown_tool_type(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="m", tools=[{"type": "browser"}])  # type: ignore[list-item]
    assert err.value.body["param"] == "tools[0].type"
    assert "browser" in err.value.body["message"]


def test_too_many_tools(client: OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="m", tools=tools)  # type: ignore[arg-type]
    assert err.value.body["param"] == "tools"


def test_bad_function_name(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(
            model="m", tools=[{"type": "function", "function": {"name": "has space"}}])
    assert err.value.body["param"] == "tools[0].function.name"


def test_missing_and_unknown_fields(server: ServerProcess) -> None:
    error = assert_openai_error(httpx.post(f"{server.base_url}/assistants", json={}), 400)
    assert error["param"] == "model"
    error = assert_openai_error(
        httpx.post(f"{server.base_url}/assistants", json={"model": "m", "colour": "red"}), 400)
    assert "colour" in str(error["message"])


def test_bad_json_and_content_type(server: ServerProcess) -> None:
    url = f"{server.base_url}/assistants"
    error = assert_openai_error(
        httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        400)
    assert "JSON" in str(error["message"])
    error = assert_openai_error(
        httpx.post(url, content=b"model=m", headers={"content-type": "text/plain"}), 400)
    assert "Content-Type" in str(error["message"])
    assert_openai_error(httpx.post(url, json=["a", "list"]), 400)


def test_unknown_route_and_method(server: ServerProcess) -> None:
    error = assert_openai_error(httpx.get(f"{server.base_url}/nothing/here"), 404)
    assert error["message"] == "Invalid URL (GET /v1/nothing/here)"
    assert_openai_error(httpx.put(f"{server.base_url}/assistants"), 405)


def test_empty_message_content(client: OpenAI) -> None:
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content="")
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content=[])
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.messages.create(thread.id, role="system", content="x")  # type: ignore[arg-type]
    assert err.value.body["param"] == "role"


def test_health_and_docs(server: ServerProcess) -> None:
    root = server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{root}/docs").status_code == 200
    schema = httpx.get(f"{root}/openapi.json").json()
    assert "/v1/assistants" in schema["paths"]


def test_beta_header_is_optional(server: ServerProcess) -> None:
    response = httpx.post(f"{server.base_url}/threads", json={})
    assert response.status_code == 200
    response = httpx.post(f"{server.base_url}/threads", json={},
                          headers={"OpenAI-Beta": "assistants=v2"})
    assert response.status_code == 200


def test_values_of_another_json_type_are_refused(server: ServerProcess, client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create()
    url = f"{server.base_url}/threads/{thread.id}/runs"
    for field, value, expected, got in [
            ("stream", "yes", "a boolean", "a string"),
            ("stream", 0, "a boolean", "an integer"),
            ("parallel_tool_calls", "no", "a boolean", "a string"),
            ("temperature", "0.5", "a number", "a string"),
            ("max_completion_tokens", "300", "an integer", "a string"),
            ("max_completion_tokens", 300.0, "an integer", "a decimal number"),
            ("metadata", [], "an object", "an array")]:
        error = assert_openai_error(
            httpx.post(url, json={"assistant_id": assistant.id, field: value}), 400)
        assert error["param"] == field
        assert error["code"] == "invalid_type"
        assert error["message"] == (f"Invalid type for '{field}': expected {expected}, "
                                    f"but got {got} instead.")
    # A whole number is a number: temperature 1 is taken as 1.0.
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id,
                                          temperature=1)
    assert run.temperature == 1.0
    assert not client.beta.threads.runs.list(thread.id, limit=5).data[1:]  # nothing else


def test_out_of_range_numbers_say_integer_or_decimal(server: ServerProcess,
                                                   client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create()
    url = f"{server.base_url}/threads/{thread.id}/runs"
    for field, value, message in [
            ("temperature", 3, "decimal above maximum value. Expected a value <= 2, but got 3"),
            ("top_p", -0.5, "decimal below minimum value. Expected a value >= 0, but got -0.5"),
            ("max_completion_tokens", 10,
             "integer below minimum value. Expected a value >= 256, but got 10")]:
        error = assert_openai_error(
            httpx.post(url, json={"assistant_id": assistant.id, field: value}), 400)
        assert error["message"] == f"Invalid '{field}': {message} instead."
        assert (error["param"], error["code"]) == (field, "invalid_value")


def test_tool_choice_and_response_format_objects_are_checked_inside(
        server: ServerProcess, client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model="m")
    thread = client.beta.threads.create()
    url = f"{server.base_url}/threads/{thread.id}/runs"
    for body, param, code in [
            ({"tool_choice": {"type": "function"}}, "tool_choice.function",
             "missing_required_parameter"),
            ({"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name",
             "missing_required_parameter"),
            ({"tool_choice": {"type": "function", "function": None}}, "tool_choice.function",
             "invalid_type"),
            ({"tool_choice": {"type": "browser"}}, "tool_choice.type", "invalid_value"),
            ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
            ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
            ({"additional_messages": [{"role": "user", "content": "x"}],
              "tool_choice": {"type": "function"}}, "tool_choice.function",
             "missing_required_parameter")]:
        error = assert_openai_error(
            httpx.post(url, json={"assistant_id": assistant.id, **body}), 400)
        assert (error["param"], error["code"]) == (param, code), error
    assert client.beta.threads.runs.list(thread.id).data == []
    assert client.beta.threads.messages.list(thread.id).data == []


def test_tool_choice_must_name_one_of_the_runs_tools(server: ServerProcess,
                                                     client: OpenAI) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    assistant = client.beta.assistants.create(model="m", tools=[weather])  # type: ignore[list-item]
    thread = client.beta.threads.create()
    url = f"{server.base_url}/threads/{thread.id}/runs"
    for body, param in [
            ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
             "tool_choice.function.name"),
            ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
            ({"tools": [], "tool_choice": {"type": "function",
                                           "function": {"name": "get_weather"}}},
             "tool_choice.function.name"),
            ({"tools": [{"type": "code_interpreter"}], "tool_choice": {"type": "file_search"}},
             "tool_choice.type")]:
        error = assert_openai_error(
            httpx.post(url, json={"assistant_id": assistant.id, **body}), 400)
        assert (error["param"], error["code"]) == (param, "invalid_value"), error
    error = assert_openai_error(httpx.post(f"{server.base_url}/threads/runs", json={
        "assistant_id": assistant.id, "tool_choice": {"type": "code_interpreter"}}), 400)
    assert error["param"] == "tool_choice.type"  # (the thread is not stored either)
    assert client.beta.threads.runs.list(thread.id).data == []


def test_integers_beyond_64_bits_are_a_400_naming_the_field(client: OpenAI) -> None:
    """Any-JSON fields (a function's parameters, a json_schema, file attributes) take only
    integers a 64-bit one holds (they were a 500 when the object was stored)."""
    huge = 2**70
    assistants_before = len(client.beta.assistants.list(limit=100).data)
    parameters = {"type": "object", "properties": {"n": {"type": "integer", "maximum": huge}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="m", tools=[
            {"type": "function", "function": {"name": "f", "parameters": parameters}}])
    assert err.value.body["param"] == "tools[0].function.parameters"
    assert "properties.n.maximum" in err.value.body["message"]
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "object", "properties": {"n": {"enum": [1, -huge]}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="m", response_format=schema)  # type: ignore[arg-type]
    assert err.value.body["param"] == "response_format.json_schema.schema"
    assert "properties.n.enum[1]" in err.value.body["message"]
    assert len(client.beta.assistants.list(limit=100).data) == assistants_before
    ok = client.beta.assistants.create(model="m", tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"maximum": 2**64 - 1, "minimum": -(2**63)}}}])
    assert ok.tools[0].function.parameters == {"maximum": 2**64 - 1, "minimum": -(2**63)}

    store = client.vector_stores.create(name="attrs")
    file_id = client.files.create(file=("a.txt", b"apples"), purpose="assistants").id
    with pytest.raises(openai.BadRequestError) as err:
        client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id,
                                          attributes={"n": huge})
    assert err.value.body["param"] == "attributes"
    assert list(client.vector_stores.files.list(store.id)) == []
