"""The file_search tool in runs: retrieval from the assistant's and the thread's vector stores,
the recorded tool call, and citations in the answer."""

from __future__ import annotations

import io
import re
from typing import Any

from openai import AssistantEventHandler, OpenAI

from tests.api.runs_support import scripted_assistant
from tests.api.test_vector_stores import CORPUS, PARAPHRASES, corpus_store
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

MARKER = re.compile(r"【\d+:\d+†([^】]*)】")
CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


def cite(name: str) -> Any:
    """A model step that answers with the marker the tool gave for file ``name``."""

    def step(body: dict[str, Any]) -> Reply:
        results = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "tool")
        marker = next(m[0] for m in MARKER.finditer(results) if m[1] == name)
        return Reply(f"Here is the answer {marker}.")

    return step


def test_run_searches_the_assistants_store_and_cites_the_right_file(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    store_id, ids = corpus_store(client)
    assistant, model = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("file_search", {"queries": [PARAPHRASES["whales.txt"]]})]),
        cite("whales.txt"),
        tools=[{"type": "file_search", "file_search": {"max_num_results": 4}}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}})
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Tell me about big sea animals"}]})
    assert run.status == "completed", run.last_error

    message = client.beta.threads.messages.list(run.thread_id).data[0]
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.value.startswith("Here is the answer 【")
    (annotation,) = text.annotations
    assert annotation.type == "file_citation"
    assert annotation.file_citation.file_id == ids["whales.txt"]  # type: ignore[union-attr]
    assert text.value[annotation.start_index:annotation.end_index] == annotation.text

    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "file_search"
    assert call.file_search.ranking_options.score_threshold == 0.0
    results = call.file_search.results
    assert 1 <= len(results) <= 4 and results[0].file_id == ids["whales.txt"]
    assert results[0].file_name == "whales.txt" and 0 < results[0].score <= 1

    # The model's prompt had the passages, headed by their markers.
    request = fake_model.requests(model)[-1]
    tool_message = next(m for m in request["messages"] if m["role"] == "tool")
    assert CORPUS["whales.txt"] in tool_message["content"]


def test_citations_stream_as_a_delta_before_the_message_completes(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    store_id, ids = corpus_store(client)
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("file_search", {"queries": [PARAPHRASES["whales.txt"]]})]),
        cite("whales.txt"), tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Whales?"}])
    seen: list[tuple[str, Any]] = []

    class Handler(AssistantEventHandler):
        def on_text_delta(self, delta: Any, snapshot: Any) -> None:
            seen.append(("delta", delta))

        def on_message_done(self, message: Any) -> None:
            seen.append(("done", message))

    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=Handler()) as stream:
        stream.until_done()
        (snapshot,) = stream.get_final_messages()
    *deltas, last = seen
    assert last[0] == "done"
    annotated = [d for _, d in deltas if d.annotations]
    assert len(annotated) == 1 and annotated[0].value == ""  # printable as it comes
    (streamed,) = annotated[0].annotations
    assert streamed.index == 0 and streamed.type == "file_citation"
    assert streamed.file_citation.file_id == ids["whales.txt"]  # type: ignore[union-attr]
    stored = client.beta.threads.messages.list(thread.id).data[0].content[0].text  # type: ignore[union-attr]
    (annotation,) = stored.annotations
    assert (streamed.text, streamed.start_index, streamed.end_index) == (
        annotation.text, annotation.start_index, annotation.end_index)
    assert snapshot.content[0].text.annotations == stored.annotations  # type: ignore[union-attr]


def test_attachments_go_into_a_thread_store(client: OpenAI,
                                            fake_model: FakeModelServer) -> None:
    file_id = client.files.create(
        file=("menu.txt", io.BytesIO(b"The canteen serves lentil soup on Tuesdays.")),
        purpose="assistants").id
    other = client.files.create(
        file=("parking.txt", io.BytesIO(b"Visitors park in the north car park.")),
        purpose="assistants").id
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("file_search", {"query": "what food is on offer midweek"})]),
        cite("menu.txt"), tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(messages=[{
        "role": "user", "content": "What is for lunch on Tuesday?",
        "attachments": [{"file_id": file_id, "tools": [{"type": "file_search"}]},
                        {"file_id": other, "tools": [{"type": "file_search"}]}]}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed", run.last_error

    resources = client.beta.threads.retrieve(thread.id).tool_resources
    assert resources is not None and resources.file_search is not None
    (store_id,) = resources.file_search.vector_store_ids or []
    store = client.vector_stores.retrieve(store_id)
    assert store.file_counts.completed == 2
    assert store.expires_after is not None and store.expires_after.days == 7
    message = client.beta.threads.messages.list(thread.id).data[0]
    (annotation,) = message.content[0].text.annotations  # type: ignore[union-attr]
    assert annotation.file_citation.file_id == file_id  # type: ignore[union-attr]


def test_the_thread_store_is_made_when_the_message_is_created(client: OpenAI) -> None:
    """As OpenAI's: threads.retrieve shows the store at once, not only after a run
    searched; on every way a message with attachments is created, into one store."""
    def text_file(name: str) -> str:
        return client.files.create(file=(name, io.BytesIO(b"Lentil soup on Tuesdays.")),
                                   purpose="assistants").id

    def store_of(thread_id: str) -> list[str]:
        resources = client.beta.threads.retrieve(thread_id).tool_resources
        assert resources is not None and resources.file_search is not None
        return list(resources.file_search.vector_store_ids or [])

    def attached(file_id: str, tool: str = "file_search") -> dict[str, Any]:
        return {"role": "user", "content": "Read it.",
                "attachments": [{"file_id": file_id, "tools": [{"type": tool}]}]}

    first, second, third = text_file("a.txt"), text_file("b.txt"), text_file("c.txt")
    thread = client.beta.threads.create(messages=[attached(first)])
    assert thread.tool_resources.file_search is not None  # (in the create's answer too)
    (store_id,) = store_of(thread.id)
    client.beta.threads.messages.create(thread.id, **attached(second))
    assert store_of(thread.id) == [store_id]
    files = {f.id for f in client.vector_stores.files.list(store_id)}
    assert files == {first, second}

    plain = client.beta.threads.create()
    client.beta.threads.messages.create(plain.id, **attached(third, "code_interpreter"))
    assert client.beta.threads.retrieve(plain.id).tool_resources.file_search is None
    client.beta.threads.messages.create(plain.id, **attached(third))
    (made,) = store_of(plain.id)
    assert {f.id for f in client.vector_stores.files.list(made)} == {third}


def test_no_store_means_no_results(client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(
        client, fake_model, ToolCalls([Call("file_search", {"queries": ["anything"]})]),
        Reply("Nothing found."), tools=[{"type": "file_search"}])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]})
    assert run.status == "completed"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")
    call = steps.data[0].step_details.tool_calls[0]  # type: ignore[union-attr]
    assert call.type == "file_search" and call.file_search.results == []
    # Two model calls in one turn, a step each: the run's usage sums both.
    usages = [step.usage for step in steps.data]
    assert len(usages) == 2 and all(usage is not None for usage in usages)
    assert run.usage is not None and run.usage.model_dump() == {
        key: sum(getattr(usage, key) for usage in usages)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")}


def test_result_content_only_when_included(client: OpenAI, fake_model: FakeModelServer) -> None:
    store_id, _ = corpus_store(client)
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("file_search", {"queries": [PARAPHRASES["chess.md"]]})]),
        Reply("Done."), tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}})
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "chess?"}]})
    assert run.status == "completed", run.last_error
    step = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id,
                                               order="asc").data[0]
    results = step.step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert results and all(r.content is None for r in results)
    included = client.beta.threads.runs.steps.retrieve(
        step.id, run_id=run.id, thread_id=run.thread_id, include=[CONTENT])
    results = included.step_details.tool_calls[0].file_search.results  # type: ignore[union-attr]
    assert results[0].content[0].text == CORPUS["chess.md"]  # type: ignore[index]


def _streamed_results(client: OpenAI, thread_id: str, assistant_id: str,
                      include: list[str] | None) -> list[Any]:
    """The file_search results of every step event of a streamed run."""
    extra = {"include": include} if include else {}
    results: list[Any] = []
    with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=assistant_id,
                                         **extra) as stream:  # type: ignore[arg-type]
        for event in stream:
            if event.event.startswith("thread.run.step.") and event.event != \
                    "thread.run.step.delta":
                details = event.data.step_details  # type: ignore[union-attr]
                for call in getattr(details, "tool_calls", None) or []:
                    if call.type == "file_search" and call.file_search.results:
                        results += call.file_search.results
            elif event.event == "thread.run.step.delta":
                details = event.data.delta.step_details  # type: ignore[union-attr]
                for call in getattr(details, "tool_calls", None) or []:
                    found = getattr(call, "file_search", None)
                    if isinstance(found, dict):
                        results += found.get("results") or []
    return results


def test_streamed_steps_carry_result_content_only_when_included(
        client: OpenAI, fake_model: FakeModelServer) -> None:
    store_id, _ = corpus_store(client)
    assistant, _ = scripted_assistant(
        client, fake_model,
        ToolCalls([Call("file_search", {"queries": [PARAPHRASES["chess.md"]]})]),
        Reply("Done."),
        ToolCalls([Call("file_search", {"queries": [PARAPHRASES["chess.md"]]})]),
        Reply("Done again."),
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store_id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "chess?"}])

    plain = _streamed_results(client, thread.id, assistant.id, None)
    assert plain, "the stream reported no file_search results"
    for result in plain:
        content = result.get("content") if isinstance(result, dict) else result.content
        assert content is None

    included = _streamed_results(client, thread.id, assistant.id, [CONTENT])
    texts = [(r.get("content") if isinstance(r, dict) else r.content) for r in included]
    assert any(t and CORPUS["chess.md"] in str(t) for t in texts)
