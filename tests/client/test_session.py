"""AssistantSession: streamed runs, function calls answered once, cancel, files, cleanup."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.api.runs_support import scripted_assistant
from vtai.assistants import (
    AssistantSession,
    FunctionRegistry,
    ImageView,
    SessionListener,
    TextView,
    ToolCallView,
)
from vtai.testing import Call, Echo, Error, Reply, ToolCalls


class Recorder(SessionListener):
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.messages: dict[str, TextView | ImageView] = {}
        self.calls: dict[str, ToolCallView] = {}
        self.statuses: list[str] = []
        self.first_text = asyncio.Event()

    async def on_message(self, view: TextView | ImageView) -> None:
        self.messages[view.key] = view
        if isinstance(view, TextView):
            self.texts.append(view.text)
            if view.text:
                self.first_text.set()

    async def on_tool_call(self, view: ToolCallView) -> None:
        self.calls[view.id] = view

    async def on_run(self, run: object) -> None:
        self.statuses.append(run.status)  # type: ignore[attr-defined]


async def session_for(aclient: AsyncOpenAI, sync_client: OpenAI, fake_model: object,
                      *steps: object, functions: FunctionRegistry | None = None,
                      tools: list[dict[str, object]] | None = None) -> AssistantSession:
    assistant, _ = scripted_assistant(sync_client, fake_model, *steps,  # type: ignore[arg-type]
                                      tools=tools or [])
    return await AssistantSession.open(aclient, assistant_id=assistant.id, functions=functions)


async def test_streams_text_as_growing_snapshots(aclient, sync_client, fake_model) -> None:
    session = await session_for(aclient, sync_client, fake_model,
                                Reply("Hello there, streaming world"))
    recorder = Recorder()
    run = await session.send("hi", recorder)
    assert run.status == "completed"
    assert recorder.texts[-1] == "Hello there, streaming world"
    assert len(set(recorder.texts)) > 2  # several snapshots, each longer
    assert all(b.startswith(a) for a, b in zip(recorder.texts, recorder.texts[1:], strict=False))
    assert len(recorder.messages) == 1 and recorder.statuses[-1] == "completed"


async def test_parallel_function_calls_run_once_each(aclient, sync_client, fake_model) -> None:
    counts = {"weather": 0, "time": 0}
    registry = FunctionRegistry()

    @registry.register
    def get_weather(city: str) -> dict[str, str]:
        """Current weather in a city."""
        counts["weather"] += 1
        return {"city": city, "sky": "sunny"}

    @registry.register
    async def get_time(tz: str) -> str:
        """Current time in a time zone."""
        counts["time"] += 1
        return f"12:00 {tz}"

    session = await session_for(
        aclient, sync_client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Paris"}), Call("get_time", {"tz": "CET"})]),
        Echo(), functions=registry, tools=registry.tools())
    recorder = Recorder()
    run = await session.send("weather and time?", recorder)

    assert run.status == "completed"
    assert counts == {"weather": 1, "time": 1}
    functions = [v for v in recorder.calls.values() if v.type == "function"]
    assert {v.name: v.output for v in functions} == {
        "get_weather": json.dumps({"city": "Paris", "sky": "sunny"}), "get_time": "12:00 CET"}
    assert json.loads(functions[0].input) in ({"city": "Paris"}, {"tz": "CET"})
    assert "requires_action" in recorder.statuses
    echoed = recorder.texts[-1]
    assert "tool: 12:00 CET" in echoed and '"sky": "sunny"' in echoed


async def test_cancelling_send_cancels_the_run(aclient, sync_client, fake_model) -> None:
    session = await session_for(aclient, sync_client, fake_model,
                                Reply("one two three four five six", chunk_delay=1.0))
    recorder = Recorder()
    task = asyncio.create_task(session.send("go slowly", recorder))
    await asyncio.wait_for(recorder.first_text.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.run is not None
    for _ in range(100):
        run = await aclient.beta.threads.runs.retrieve(session.run.id, thread_id=session.thread_id)
        if run.status == "cancelled":
            break
        await asyncio.sleep(0.05)
    assert run.status == "cancelled"


async def test_attachments_choose_their_tool_and_cleanup_deletes(
        aclient, sync_client, fake_model, tmp_path: Path) -> None:
    session = await session_for(aclient, sync_client, fake_model, Reply("Got them."),
                                tools=[{"type": "code_interpreter"}, {"type": "retrieval"}])
    (tmp_path / "notes.md").write_text("# Notes\nThe answer is 42.")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    doc = await session.attach(tmp_path / "notes.md")
    data = await session.attach(tmp_path / "data.csv")
    assert (doc.tool, data.tool) == ("file_search", "code_interpreter")

    run = await session.send("", Recorder())
    assert run.status == "completed"
    messages = await aclient.beta.threads.messages.list(session.thread_id, order="asc")
    user = messages.data[0]
    assert {(a.file_id, a.tools[0].type) for a in user.attachments or []} == {
        (doc.file_id, "file_search"), (data.file_id, "code_interpreter")}
    assistant = await aclient.beta.assistants.retrieve(session.assistant_id)
    assert [t.type for t in assistant.tools] == ["code_interpreter", "file_search"]

    thread_id = session.thread_id
    await session.new_thread()  # the old thread stays, with its files
    assert session.thread_id != thread_id
    assert (await aclient.beta.threads.retrieve(thread_id)).id == thread_id
    remaining = {f.id for f in (await aclient.files.list()).data}
    assert {doc.file_id, data.file_id} <= remaining

    session.thread_id = thread_id  # cleanup() deletes the thread and the files
    session.uploaded = [doc.file_id, data.file_id]
    await session.cleanup()
    remaining = {f.id for f in (await aclient.files.list()).data}
    assert doc.file_id not in remaining and data.file_id not in remaining
    with pytest.raises(openai.NotFoundError):
        await aclient.beta.threads.retrieve(thread_id)


async def test_ids_are_saved_and_reused(aclient, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = await AssistantSession.open(aclient, state_path=state, resume_thread=True)
    again = await AssistantSession.open(aclient, state_path=state, resume_thread=True)
    fresh = await AssistantSession.open(aclient, state_path=state)
    assert (again.assistant_id, again.thread_id) == (first.assistant_id, first.thread_id)
    assert fresh.assistant_id == first.assistant_id and fresh.thread_id != first.thread_id
    saved = json.loads(state.read_text())[str(aclient.base_url)]
    assert saved == {"assistant_id": first.assistant_id, "thread_id": fresh.thread_id}


async def test_a_failed_run_is_returned_not_raised(aclient, sync_client, fake_model) -> None:
    session = await session_for(aclient, sync_client, fake_model,
                                Error(400, "No such model upstream.",
                                      type="invalid_request_error"))
    run = await session.send("hi", Recorder())
    assert run.status == "failed"
    assert run.last_error is not None and "No such model upstream." in run.last_error.message


async def test_a_saved_assistant_gets_the_functions_asked_for(aclient, sync_client,
                                                              tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = await AssistantSession.open(aclient, state_path=state)  # made without functions
    assert first.functions_provided == []
    registry = FunctionRegistry()

    @registry.register
    def get_time(city: str) -> str:
        """The time in a city."""
        return "noon"

    again = await AssistantSession.open(aclient, state_path=state, functions=registry)
    assert again.assistant_id == first.assistant_id
    assert again.functions_provided == ["get_time"]
    tools = sync_client.beta.assistants.retrieve(again.assistant_id).tools
    assert [t.type for t in tools] == ["code_interpreter", "file_search", "function"]
    assert tools[2].function.name == "get_time"  # type: ignore[union-attr]
    third = await AssistantSession.open(aclient, state_path=state, functions=registry)
    assert third.functions_provided == []  # already there: left as it is
