"""A run's settings as the chat completion request of each model call (runs.chat_request)."""

from __future__ import annotations

from typing import Any

from vtai.server.runs.chat_request import TurnOptions, chat_request, run_options

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": None,
                                             "parameters": {"type": "object"}}}
SEARCH = {"type": "function", "function": {"name": "file_search", "parameters": {}}}
PROMPT = [{"role": "user", "content": "hi"}]


def run(**fields: Any) -> dict[str, Any]:
    return {"tools": [WEATHER, {"type": "file_search"}], "tool_choice": "auto",
            "parallel_tool_calls": True, "response_format": "auto", "temperature": 1.0,
            "top_p": 1.0, "max_completion_tokens": None, "reasoning_effort": None, **fields}


def test_tools_are_the_runs_functions_then_the_built_in_tools() -> None:
    options = run_options(run(), {"file_search": SEARCH})
    params = chat_request("m", PROMPT, options)
    assert params["tools"] == [
        {"type": "function", "function": {"name": "get_weather",
                                          "parameters": {"type": "object"}}}, SEARCH]
    assert params["stream"] is True and params["stream_options"] == {"include_usage": True}
    assert "tool_choice" not in params and "parallel_tool_calls" not in params
    assert "temperature" not in params and "top_p" not in params  # 1.0: the model's own


def test_a_forced_choice_goes_with_the_first_call_only() -> None:
    for choice, sent in [("required", "required"),
                         ({"type": "function", "function": {"name": "get_weather"}},
                          {"type": "function", "function": {"name": "get_weather"}}),
                         ({"type": "file_search"},
                          {"type": "function", "function": {"name": "file_search"}})]:
        options = run_options(run(tool_choice=choice), {"file_search": SEARCH})
        assert chat_request("m", PROMPT, options)["tool_choice"] == sent
        assert "tool_choice" not in chat_request("m", PROMPT, options, first=False)
    none = run_options(run(tool_choice="none"), {"file_search": SEARCH})
    assert chat_request("m", PROMPT, none, first=False)["tool_choice"] == "none"


def test_budget_sampling_and_formats() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {},
                                                     "description": None, "strict": None}}
    options = run_options(run(max_completion_tokens=500, temperature=0.2, top_p=0.9,
                              parallel_tool_calls=False, response_format=schema,
                              reasoning_effort="low"), {})
    params = chat_request("llama3", PROMPT, options, used=120)
    assert params["max_tokens"] == 380 and "max_completion_tokens" not in params
    assert (params["temperature"], params["top_p"]) == (0.2, 0.9)
    assert params["parallel_tool_calls"] is False and params["reasoning_effort"] == "low"
    assert params["response_format"] == {"type": "json_schema",
                                         "json_schema": {"name": "s", "schema": {}}}
    reasoning = chat_request("o3-mini", PROMPT, options, used=600)
    assert reasoning["max_completion_tokens"] == 1 and "max_tokens" not in reasoning


def test_no_tools_no_tool_fields() -> None:
    params = chat_request("m", PROMPT, TurnOptions(tools=[], tool_choice="required"))
    assert "tools" not in params and "tool_choice" not in params
