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
