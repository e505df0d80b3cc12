"""The documented functions end to end: assistant, thread, message, run, poll, tool outputs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.api.runs_support import scripted_assistant
from vtai.assistants import (
    AssistantsError,
    FunctionRegistry,
    RunTimeout,
    TextView,
    add_message_to_thread,
    create_assistant,
    create_run,
    create_thread,
    poll_run,
    process_thread_message,
    process_tool_calls,
    submit_tool_outputs,
    use_functions,
)
from vtai.assistants import runs as runs_module
from vtai.testing import Call, Echo, Hang, Reply, ToolCalls


async def test_text_run_from_the_documented_functions(aclient, fake_model) -> None:
    assistant = await create_assistant(aclient, "Helper", "Be brief.",
                                       tools=[{"type": "retrieval"}], model="docs-text")
    fake_model.script("docs-text", Reply("Four."))
    assert [t.type for t in assistant.tools] == ["file_search"]
    assert (assistant.name, assistant.instructions, assistant.model) == (
        "Helper", "Be brief.", "docs-text")

    thread = await create_thread(aclient)
    message = await add_message_to_thread(aclient, thread.id, "2+2?")
    assert (message.role, message.content[0].text.value) == ("user", "2+2?")
    run = await create_run(aclient, thread.id, assistant.id)
    assert run.status == "queued"
    run = await poll_run(aclient, thread.id, run.id)
    assert run.status == "completed"

    reply = (await aclient.beta.threads.messages.list(thread.id)).data[0]
    references: dict[str, Any] = {}
    views = await process_thread_message(references, reply, aclient)
    assert isinstance(views[0], TextView) and views[0].text == "Four."
    assert list(references) == [f"{reply.id}:0"]


async def test_function_round_trip_with_two_parallel_calls(aclient, sync_client,
                                                            fake_model) -> None:
    calls: list[tuple[str, str]] = []
    registry = FunctionRegistry()

    @registry.register
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(("get_weather", city))
        return f"sunny in {city}"

    @registry.register
    async def get_time(tz: str) -> str:
        """Current time."""
        calls.append(("get_time", tz))
        return f"noon {tz}"

    assistant, _ = scripted_assistant(
        sync_client, fake_model,
        ToolCalls([Call("get_weather", {"city": "Oslo"}), Call("get_time", {"tz": "CET"})]),
        Echo(), tools=registry.tools())
    thread = await create_thread(aclient)
    await add_message_to_thread(aclient, thread.id, "weather and time")
    run = await poll_run(aclient, thread.id, (await create_run(aclient, thread.id,
                                                                assistant.id)).id)
    assert run.status == "requires_action"

    with use_functions(registry):
        outputs = await process_tool_calls(run.required_action.submit_tool_outputs)
        # A later poll sees the same pending calls in the step: nothing runs again.
        steps = await aclient.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
        again = await process_tool_calls(steps.data[0].step_details)
    assert sorted(calls) == [("get_time", "CET"), ("get_weather", "Oslo")]
    assert sorted(again, key=lambda o: o["tool_call_id"]) == sorted(
        outputs, key=lambda o: o["tool_call_id"])

    run = await submit_tool_outputs(aclient, thread.id, run.id, outputs)
    assert run.status == "queued"
    run = await poll_run(aclient, thread.id, run.id)
    assert run.status == "completed"
    reply = (await aclient.beta.threads.messages.list(thread.id)).data[0]
    assert "tool: sunny in Oslo" in reply.content[0].text.value
    assert "tool: noon CET" in reply.content[0].text.value
    steps = await aclient.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    with use_functions(registry):
        for step in steps.data:
            assert await process_tool_calls(step.step_details) == []  # all answered
    assert len(calls) == 2


async def test_poll_run_times_out_with_the_clients_timeout(aclient, sync_client,
                                                           fake_model) -> None:
    assistant, _ = scripted_assistant(sync_client, fake_model, Hang(5))
    thread = await create_thread(aclient)
    await add_message_to_thread(aclient, thread.id, "are you there?")
    run = await create_run(aclient, thread.id, assistant.id)
    with pytest.raises(RunTimeout, match=r"still (queued|in_progress) after 0\.5 seconds"):
        await poll_run(aclient.with_options(timeout=0.5), thread.id, run.id)
    await aclient.beta.threads.runs.cancel(run.id, thread_id=thread.id)


async def test_api_failures_raise_one_readable_error(aclient) -> None:
    readable = r"Could not start a run: No assistant found with id 'asst_nope'\. \(HTTP 404\)"
    with pytest.raises(AssistantsError, match=readable) as err:
        await create_run(aclient, "thread_nope", "asst_nope")
    assert err.value.status == 404
    with pytest.raises(AssistantsError, match="cannot reach the server"):
        await create_thread(AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x",
                                        max_retries=0))


class _Retrieve:
    """Answers run retrievals with the given statuses and poll-after headers."""

    def __init__(self, answers: list[tuple[str, str | None]]) -> None:
        self.answers = answers
        self.count = 0

    async def retrieve(self, run_id: str, *, thread_id: str) -> Any:
        status, after = self.answers[min(self.count, len(self.answers) - 1)]
        self.count += 1
        headers = {"openai-poll-after-ms": after} if after is not None else {}
        return SimpleNamespace(headers=headers,
                               parse=lambda: SimpleNamespace(status=status))


def _fake_client(answers: list[tuple[str, str | None]]) -> Any:
    runs = SimpleNamespace(with_raw_response=_Retrieve(answers))
    return SimpleNamespace(timeout=60.0, beta=SimpleNamespace(threads=SimpleNamespace(runs=runs)))


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", "expired",
                                    "incomplete", "requires_action"])
async def test_poll_run_stops_at_every_stopped_status(status: str, monkeypatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(runs_module.asyncio, "sleep", sleep)
    client = _fake_client([("queued", "250"), ("in_progress", None),
                           ("cancelling", "40"), (status, None)])
    run = await poll_run(client, "thread_x", "run_x")
    assert run.status == status
    assert slept == [0.25, 1.0, 0.04]  # the server's pace; 1 s when it names none


async def test_function_outputs_are_valid_tool_outputs(aclient) -> None:
    registry = FunctionRegistry()
    registry.register(lambda: {"ok": True}, name="ping", description="Ping.")
    step = SimpleNamespace(tool_calls=[SimpleNamespace(
        id="call_1", type="function",
        function=SimpleNamespace(name="ping", arguments="{}", output=None))])
    with use_functions(registry):
        outputs = await process_tool_calls(step)
    assert outputs == [{"tool_call_id": "call_1", "output": json.dumps({"ok": True})}]
