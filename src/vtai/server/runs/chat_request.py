"""A turn's model request: what a run asks of the model, as an OpenAI chat completion request.

``run_options`` reads a run's settings (its tools, tool_choice, response_format, sampling and
token budget) into ``TurnOptions``; ``chat_request`` makes the request of one model call from
them and the prompt. Both are pure: no I/O, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# OpenAI's reasoning models: they take max_completion_tokens (not max_tokens) and
# reasoning_effort, and refuse temperature and top_p other than their default.
REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


@dataclass(frozen=True)
class TurnOptions:
    """What every model call of a turn asks besides the prompt, in chat completion terms."""

    tools: list[dict[str, Any]]  # function tools: the caller's, then the built-in tools'
    tool_choice: Any = None  # None: the model's own choice ("auto")
    parallel_tool_calls: bool | None = None
    response_format: Any = None
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None  # of the whole turn, all its calls together
    reasoning_effort: str | None = None
    top_logprobs: int | None = None  # None: no logprobs asked for


def function_tools(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's function tools, as chat function tools."""
    tools = []
    for tool in run.get("tools") or []:
        if tool["type"] == "function":
            fn = {k: v for k, v in tool["function"].items() if v is not None}
            tools.append({"type": "function", "function": fn})
    return tools


def function_names(run: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in function_tools(run)}


def _tool_choice(run: dict[str, Any], builtins: dict[str, str]) -> Any:
    """``builtins``: the function name the model sees of each built-in tool, by tool type."""
    choice = run.get("tool_choice")
    if choice in (None, "auto"):
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    if isinstance(choice, dict):  # {"type": "code_interpreter"}: the tool's function name
        name = builtins.get(str(choice.get("type")))
        return None if name is None else {"type": "function", "function": {"name": name}}
    return choice if isinstance(choice, str) else None


def _response_format(run: dict[str, Any]) -> Any:
    value = run.get("response_format")
    if value in (None, "auto"):
        return None
    if isinstance(value, dict) and isinstance(value.get("json_schema"), dict):
        schema = {k: v for k, v in value["json_schema"].items() if v is not None}
        return {**value, "json_schema": schema}
    return value


def run_options(run: dict[str, Any], builtin_tools: dict[str, dict[str, Any]]) -> TurnOptions:
    """A run's options; ``builtin_tools``: the function definition the model sees of each
    of the run's built-in tools, by tool type."""
    names = {kind: tool["function"]["name"] for kind, tool in builtin_tools.items()}
    return TurnOptions(
        tools=function_tools(run) + list(builtin_tools.values()),
        tool_choice=_tool_choice(run, names),
        parallel_tool_calls=run.get("parallel_tool_calls"),
        response_format=_response_format(run),
        temperature=run.get("temperature"), top_p=run.get("top_p"),
        max_completion_tokens=run.get("max_completion_tokens"),
        reasoning_effort=run.get("reasoning_effort"))


def _response_tool_choice(response: dict[str, Any], builtins: dict[str, str]) -> Any:
    choice = response.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict):
        name = builtins.get(str(choice.get("type")))
        return None if name is None else {"type": "function", "function": {"name": name}}
    return None if choice in (None, "auto") else choice


def _text_format(response: dict[str, Any]) -> Any:
    fmt = (response.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {"name": fmt["name"], "schema": fmt.get("schema") or {}}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    return None


def response_options(response: dict[str, Any], builtin_tools: dict[str, dict[str, Any]],
                     logprobs: bool = False) -> TurnOptions:
    """A response's options (the Responses API's names for them); ``builtin_tools`` as for
    run_options; ``logprobs``: the response includes its tokens' log probabilities."""
    names = {kind: tool["function"]["name"] for kind, tool in builtin_tools.items()}
    functions = []
    for tool in response.get("tools") or []:
        if tool["type"] == "function":
            fn = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                  if tool.get(k) is not None}
            functions.append({"type": "function", "function": fn})
    top = response.get("top_logprobs")
    return TurnOptions(
        tools=functions + list(builtin_tools.values()),
        tool_choice=_response_tool_choice(response, names),
        parallel_tool_calls=response.get("parallel_tool_calls"),
        response_format=_text_format(response),
        temperature=response.get("temperature"), top_p=response.get("top_p"),
        max_completion_tokens=response.get("max_output_tokens"),
        reasoning_effort=(response.get("reasoning") or {}).get("effort"),
        top_logprobs=(top or 0) if logprobs or top else None)


def chat_request(model: str, messages: list[dict[str, Any]], options: TurnOptions, *,
                 used: int = 0, first: bool = True) -> dict[str, Any]:
    """The streamed chat completion request of one model call. ``used``: completion tokens
    the turn's earlier calls used; ``first``: the turn's first call (a tool_choice that
    forces a tool applies to it only: once the model has called tools, it answers as it
    sees fit, or it could never end)."""
    params: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                              "stream_options": {"include_usage": True}}
    if options.tools:
        params["tools"] = options.tools
        if options.parallel_tool_calls is False:
            params["parallel_tool_calls"] = False
        choice = options.tool_choice
        if choice is not None and (first or choice == "none"):
            params["tool_choice"] = choice
    for key in ("temperature", "top_p"):  # 1.0, the API's default, leaves the model's
        value = getattr(options, key)
        if value is not None and value != 1.0:
            params[key] = value
    if options.response_format is not None:
        params["response_format"] = options.response_format
    if options.max_completion_tokens is not None:
        budget = max(1, options.max_completion_tokens - used)
        reasoning = REASONING_MODEL.match(model) is not None
        params["max_completion_tokens" if reasoning else "max_tokens"] = budget
    if options.reasoning_effort is not None:
        params["reasoning_effort"] = options.reasoning_effort
    if options.top_logprobs is not None:
        params["logprobs"] = True
        if options.top_logprobs:
            params["top_logprobs"] = options.top_logprobs
    return params
