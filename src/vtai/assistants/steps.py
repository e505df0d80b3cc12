"""Run steps into view objects: one per tool call, updated in place as the step changes."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from openai.types.beta.threads.runs import RunStep

from vtai.assistants.functions import current_registry
from vtai.assistants.views import (
    CodeInterpreterView,
    FileSearchView,
    FunctionCallView,
    Source,
    ToolCallView,
)


def _calls(step_details: Any, *types: str) -> list[Any]:
    return [call for call in getattr(step_details, "tool_calls", None) or []
            if getattr(call, "type", None) in types]


async def process_code_interpreter(step_details: Any) -> list[CodeInterpreterView]:
    """The code interpreter calls of a step's details (complete or a streamed snapshot).

    Returns one view per call: its code, its logs joined, and the file ids of its images."""
    views = []
    for call in _calls(step_details, "code_interpreter"):
        code = call.code_interpreter
        logs, images = _code_outputs(getattr(code, "outputs", None))
        views.append(CodeInterpreterView(call.id, getattr(code, "input", None) or "", logs,
                                         images))
    return views


async def process_retrieval(step_details: Any) -> list[FileSearchView]:
    """The file_search calls (``retrieval`` in API v1) of a step's details.

    Returns one view per call with its results as sources: file id, file name, score, and the
    matched text when the step was fetched with
    ``include=["step_details.tool_calls[*].file_search.results[*].content"]``."""
    views = []
    for call in _calls(step_details, "file_search", "retrieval"):
        results = getattr(getattr(call, "file_search", None), "results", None) or []
        views.append(FileSearchView(call.id, [_source(result) for result in results]))
    return views


async def process_function_call(step_details: Any) -> list[FunctionCallView]:
    """The function calls of a step's details.

    Returns one view per call: name, arguments (JSON text) and output, taken from the step or,
    before the run has it, from a call already run here by :func:`process_tool_calls`."""
    registry = current_registry()
    views = []
    for call in _calls(step_details, "function"):
        function = call.function
        output = getattr(function, "output", None)
        if output is None:
            output = registry.output(call.id)
        views.append(FunctionCallView(call.id, function.name or "",
                                      function.arguments or "", output))
    return views


async def process_tool_call(step_references: MutableMapping[str, ToolCallView], step: RunStep,
                            tool_call: Any, name: str, input: str, output: Any,
                            show_input: str | None = None) -> ToolCallView:
    """Record one tool call of ``step`` in ``step_references`` under the call's id, creating
    its view or updating the one already there. ``output`` is text, a list of code
    interpreter outputs (logs and images), or a list of :class:`Source`; ``show_input`` names
    the language to highlight ``input`` with.

    Returns the call's view."""
    call_id = tool_call["id"] if isinstance(tool_call, dict) else tool_call.id
    call_type = tool_call["type"] if isinstance(tool_call, dict) else tool_call.type
    view = step_references.get(call_id)
    if view is None:
        view = ToolCallView(call_id, step.id, call_type, name, "", "")
        step_references[call_id] = view
    view.name, view.input, view.language = name, input, show_input
    view.output, view.image_file_ids, view.sources = _output_parts(output)
    view.status = step.status
    view.started_at = step.created_at
    view.completed_at = step.completed_at or step.failed_at or step.cancelled_at
    return view


async def process_run_step(step_references: MutableMapping[str, ToolCallView], step: RunStep
                           ) -> list[ToolCallView]:
    """Every tool call of a step as a view (none for a message creation step)."""
    details = step.step_details
    views = []
    for code in await process_code_interpreter(details):
        views.append(await process_tool_call(
            step_references, step, _by_id(details, code.id), "code_interpreter", code.input,
            _code_call(details, code.id), show_input="python"))
    for search in await process_retrieval(details):
        views.append(await process_tool_call(
            step_references, step, _by_id(details, search.id), "file_search", "",
            search.sources))
    for function in await process_function_call(details):
        views.append(await process_tool_call(
            step_references, step, _by_id(details, function.id), function.name,
            _pretty_json(function.arguments), function.output or "", show_input="json"))
    return views


def _by_id(details: Any, call_id: str) -> Any:
    return next(call for call in details.tool_calls if call.id == call_id)


def _code_call(details: Any, call_id: str) -> list[Any]:
    return list(getattr(_by_id(details, call_id).code_interpreter, "outputs", None) or [])


def _code_outputs(outputs: Any) -> tuple[str, list[str]]:
    logs: list[str] = []
    images: list[str] = []
    for item in outputs or []:
        kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
        if kind == "logs":
            logs.append(item["logs"] if isinstance(item, dict) else item.logs or "")
        elif kind == "image":
            image = item["image"] if isinstance(item, dict) else item.image
            images.append(image["file_id"] if isinstance(image, dict) else image.file_id)
    return "".join(logs), images


def _source(result: Any) -> Source:
    content = " ".join(part.text for part in result.content or [] if part.text)
    return Source(result.file_id, result.file_name, result.score, content)


def _output_parts(output: Any) -> tuple[str, list[str], list[Source]]:
    if output is None:
        return "", [], []
    if isinstance(output, str):
        return output, [], []
    items = list(output)
    if items and all(isinstance(item, Source) for item in items):
        return "", [], items
    logs, images = _code_outputs(items)
    return logs, images, []


def _pretty_json(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments  # still streaming, or not JSON: show it as the model wrote it
