"""The OpenAI Agents SDK against this server: an agent with a function tool, a handoff to
another agent, and a streamed run, on the Responses API (OpenAIResponsesModel) and on chat
completions (OpenAIChatCompletionsModel)."""

from __future__ import annotations

from typing import Any

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.api.responses_support import scripted_model
from tests.support import ServerProcess
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

set_tracing_disabled(True)  # (traces would go to OpenAI's servers)

KINDS = ["responses", "chat_completions"]


def _model(kind: str, name: str, server: ServerProcess) -> Any:
    client = AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    if kind == "responses":
        return OpenAIResponsesModel(model=name, openai_client=client)
    return OpenAIChatCompletionsModel(model=name, openai_client=client)


calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"Sunny and 21 degrees in {city}."


def _agents(kind: str, name: str, server: ServerProcess) -> tuple[Agent, Agent]:
    weather = Agent(name="Weather agent", instructions="You answer weather questions.",
                    tools=[get_weather], model=_model(kind, name, server))
    triage = Agent(name="Triage agent", instructions="Hand weather questions over.",
                   handoffs=[weather], model=_model(kind, name, server))
    return triage, weather


def _script(fake_model: FakeModelServer) -> str:
    return scripted_model(
        fake_model,
        ToolCalls([Call("transfer_to_weather_agent", {})]),
        ToolCalls([Call("get_weather", {"city": "Paris"})]),
        Reply("It is sunny in Paris."))


@pytest.mark.parametrize("kind", KINDS)
async def test_an_agent_hands_off_and_calls_a_tool(kind: str, server: ServerProcess,
                                                   fake_model: FakeModelServer) -> None:
    name = _script(fake_model)
    calls.clear()
    triage, weather = _agents(kind, name, server)
    result = await Runner.run(triage, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert result.last_agent.name == weather.name
    assert calls == ["Paris"]
    sent = fake_model.requests(name)
    assert len(sent) == 3
    # the weather agent's model read its instructions, the handoff and the tool's result
    last = sent[-1]["messages"]
    assert last[0] == {"role": "system", "content": "You answer weather questions."}
    assert any(m["role"] == "tool" and "Sunny and 21 degrees" in m["content"] for m in last)
    assert any(m["role"] == "user" and m["content"] == "What is the weather in Paris?"
               for m in last)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_streamed_agent_run(kind: str, server: ServerProcess,
                                    fake_model: FakeModelServer) -> None:
    name = _script(fake_model)
    calls.clear()
    triage, _ = _agents(kind, name, server)
    result = Runner.run_streamed(triage, "What is the weather in Paris?")
    kinds, deltas = [], []
    async for event in result.stream_events():
        kinds.append(event.type)
        if event.type == "raw_response_event" and \
                getattr(event.data, "type", "") == "response.output_text.delta":
            deltas.append(event.data.delta)
    assert result.final_output == "It is sunny in Paris."
    assert "".join(deltas) == "It is sunny in Paris."
    assert "agent_updated_stream_event" in kinds and "run_item_stream_event" in kinds
    assert calls == ["Paris"]
