"""Built-in tools in responses: file_search over vector stores with citations, and the code
interpreter in a container that lives on across a chain of responses."""

from __future__ import annotations

from typing import Any

from openai import OpenAI

from tests.api.responses_support import check_event, scripted_model
from tests.api.test_file_search import cite
from tests.api.test_vector_stores import CORPUS, PARAPHRASES, corpus_store
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls


def _stream(client: OpenAI, **create: Any) -> tuple[list[Any], Any]:
    with client.responses.stream(**create) as stream:
        events = [event for event in stream]
        final = stream.get_final_response()
    for event in events:
        check_event(event.model_dump(mode="json", exclude_unset=True))
    return events, final


def test_file_search_finds_and_cites(client: OpenAI, fake_model: FakeModelServer) -> None:
    store_id, ids = corpus_store(client)
    model = scripted_model(
        fake_model, ToolCalls([Call("file_search", {"queries": [PARAPHRASES["whales.txt"]]})]),
        cite("whales.txt"))
    tool = {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 4}
    events, response = _stream(client, model=model, input="Big sea animals?",
                               tools=[tool], include=["file_search_call.results"])
    assert response.status == "completed"
    search, message = response.output
    assert search.type == "file_search_call" and search.status == "completed"
    assert search.queries == [PARAPHRASES["whales.txt"]]
    assert search.results and search.results[0].file_id == ids["whales.txt"]
    assert search.results[0].filename == "whales.txt" and search.results[0].text
    text = message.content[0]
    assert text.text.startswith("Here is the answer 【")
    (annotation,) = text.annotations
    assert annotation.type == "file_citation" and annotation.file_id == ids["whales.txt"]
    assert annotation.filename == "whales.txt"
    assert text.text[annotation.index:].startswith("【")
    kinds = [e.type for e in events]
    for kind in ("response.file_search_call.in_progress", "response.file_search_call.searching",
                 "response.file_search_call.completed",
                 "response.output_text.annotation.added"):
        assert kind in kinds
    assert kinds.index("response.file_search_call.completed") < \
        kinds.index("response.output_text.delta")
    tool_message = next(m for m in fake_model.requests(model)[-1]["messages"]
                        if m["role"] == "tool")
    assert CORPUS["whales.txt"] in tool_message["content"]

    # without include, the results are left out (as OpenAI's)
    again = client.responses.retrieve(response.id)
    assert again.output[0].results is None  # type: ignore[union-attr]
    included = client.responses.retrieve(response.id, include=["file_search_call.results"])
    assert included.output[0].results  # type: ignore[union-attr]


def test_the_code_interpreter_runs_in_a_container_that_lives_on(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    model = scripted_model(
        fake_model, ToolCalls([Call("code_interpreter", {"code": "x = 6 * 7\nprint(x)"})]),
        Reply("It is 42."),
        ToolCalls([Call("code_interpreter", {"code": "print(x + 1)"})]), Reply("43."))
    tool = {"type": "code_interpreter", "container": {"type": "auto"}}
    events, first = _stream(client, model=model, input="Compute", tools=[tool],
                            include=["code_interpreter_call.outputs"])
    call, message = first.output
    assert call.type == "code_interpreter_call" and call.status == "completed"
    assert call.code == "x = 6 * 7\nprint(x)" and call.container_id
    assert call.outputs and call.outputs[0].type == "logs"
    assert call.outputs[0].logs.strip() == "42"  # type: ignore[union-attr]
    assert message.content[0].text == "It is 42."
    kinds = [e.type for e in events]
    assert kinds.index("response.code_interpreter_call.in_progress") < \
        kinds.index("response.code_interpreter_call_code.done") < \
        kinds.index("response.code_interpreter_call.interpreting") < \
        kinds.index("response.code_interpreter_call.completed")

    second = client.responses.create(model=model, input="Again", tools=[tool],
                                     previous_response_id=first.id,
                                     include=["code_interpreter_call.outputs"])
    again = second.output[0]
    assert again.container_id == call.container_id  # the same container: x is still there
    assert again.outputs[0].logs.strip() == "43"  # type: ignore[union-attr]
    # the model read the first call and its output in the second prompt
    prompt = fake_model.requests(model)[-2]["messages"]
    assert any(m["role"] == "tool" and "42" in m["content"] for m in prompt)
