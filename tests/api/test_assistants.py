"""Assistants CRUD through the official SDK."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import upload

FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
        "strict": True,
    },
}


def test_create_retrieve_update_delete(client: OpenAI) -> None:
    file_id = upload(client)
    store_id = client.vector_stores.create().id
    created = client.beta.assistants.create(
        model="gpt-4o", name="Math Tutor", description="helps", instructions="Be brief.",
        tools=[{"type": "code_interpreter"}, {"type": "file_search"}, FUNCTION_TOOL],
        tool_resources={"code_interpreter": {"file_ids": [file_id]},
                        "file_search": {"vector_store_ids": [store_id]}},
        metadata={"team": "core"}, temperature=0.2, top_p=0.9,
        response_format={"type": "json_object"}, reasoning_effort="low",
    )
    assert created.id.startswith("asst_")
    assert created.object == "assistant"
    assert created.model == "gpt-4o"
    assert created.name == "Math Tutor"
    assert created.instructions == "Be brief."
    assert [t.type for t in created.tools] == ["code_interpreter", "file_search", "function"]
    assert created.tools[2].function.name == "get_weather"
    assert created.tools[2].function.strict is True
    assert created.tool_resources.code_interpreter.file_ids == [file_id]
    assert created.tool_resources.file_search.vector_store_ids == [store_id]
    assert created.metadata == {"team": "core"}
    assert created.temperature == 0.2 and created.top_p == 0.9
    assert created.response_format.type == "json_object"

    fetched = client.beta.assistants.retrieve(created.id)
    assert fetched == created

    updated = client.beta.assistants.update(created.id, name="Renamed", tools=[],
                                            metadata={"team": "ui"})
    assert updated.name == "Renamed"
    assert updated.tools == []
    assert updated.metadata == {"team": "ui"}
    assert updated.instructions == "Be brief."  # untouched fields stay
    assert client.beta.assistants.retrieve(created.id) == updated

    result = client.beta.assistants.delete(created.id)
    assert result.deleted is True and result.id == created.id
    assert result.object == "assistant.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.assistants.retrieve(created.id)
    assert err.value.body["message"] == f"No assistant found with id '{created.id}'."
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.delete(created.id)


def test_defaults(client: OpenAI) -> None:
    created = client.beta.assistants.create(model="m")
    assert created.name is None and created.instructions is None
    assert created.tools == [] and created.metadata == {}
    assert created.temperature == 1.0 and created.top_p == 1.0
    assert created.response_format == "auto"


def test_retrieval_is_an_alias_of_file_search(client: OpenAI) -> None:
    created = client.beta.assistants.create(model="m", tools=[{"type": "retrieval"}])  # type: ignore[list-item]
    assert created.tools[0].type == "file_search"


def test_json_schema_response_format(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    created = client.beta.assistants.create(
        model="m", response_format={"type": "json_schema",
                                    "json_schema": {"name": "point", "schema": schema,
                                                    "strict": True}})
    assert created.response_format.type == "json_schema"
    assert created.response_format.json_schema.schema_ == schema


def test_update_unknown_assistant_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.update("asst_missing", name="x")


def test_unknown_or_foreign_files_are_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.assistants.create(
            model="m", tool_resources={"code_interpreter": {"file_ids": ["file-missing"]}})
    assert err.value.body["message"] == "No file found with id 'file-missing'."


def test_unknown_vector_stores_are_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.assistants.create(
            model="m", tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}})
    assert err.value.body["message"] == "No vector store found with id 'vs_missing'."
