"""Function calling: Python callables the model may call, and running its calls.

A function's JSON schema comes from its type hints (through pydantic) and its docstring (the
first paragraph describes the function, an ``Args:`` section or ``:param x:`` lines describe
the parameters). Arguments are validated against that schema before the call, and every
failure becomes an output the model can read, so a bad call never stops the run."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, get_type_hints

import pydantic
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

MAX_REMEMBERED_CALLS = 4096  # call ids whose outputs are kept, so no call ever runs twice


@dataclass
class RegisteredFunction:
    name: str
    description: str
    func: Callable[..., Any]
    arguments: type[pydantic.BaseModel]

    def definition(self) -> dict[str, Any]:
        """The ``{"type": "function", ...}`` tool entry for an assistant or a run."""
        schema = self.arguments.model_json_schema()
        _drop_titles(schema)
        schema.setdefault("properties", {})
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": schema}}


@dataclass
class PendingCall:
    id: str
    name: str
    arguments: str


class FunctionRegistry:
    """Named callables (sync or async) and the outputs of the calls already made to them."""

    def __init__(self) -> None:
        self.functions: dict[str, RegisteredFunction] = {}
        self._calls: OrderedDict[str, asyncio.Task[str]] = OrderedDict()

    def register(self, func: Callable[..., Any] | None = None, *, name: str | None = None,
                 description: str | None = None) -> Any:
        """Register ``func`` (usable as ``@registry.register`` or with keyword options)."""
        def add(target: Callable[..., Any]) -> Callable[..., Any]:
            entry = describe(target, name, description)
            self.functions[entry.name] = entry
            return target
        return add(func) if func is not None else add

    def tools(self) -> list[dict[str, Any]]:
        """The function tool entries of every registered function."""
        return [entry.definition() for entry in self.functions.values()]

    async def run(self, calls: Iterable[PendingCall]) -> list[ToolOutput]:
        """Outputs for ``calls``; each call id runs once, later requests get its output."""
        calls = list(calls)
        outputs = await asyncio.gather(*(self._task(call) for call in calls))
        return [ToolOutput(tool_call_id=call.id, output=output)
                for call, output in zip(calls, outputs, strict=True)]

    def output(self, call_id: str) -> str | None:
        """The output of a call that has finished here, if any."""
        task = self._calls.get(call_id)
        return task.result() if task is not None and task.done() else None

    def _task(self, call: PendingCall) -> asyncio.Task[str]:
        task = self._calls.get(call.id)
        if task is None:
            task = asyncio.ensure_future(self.execute(call.name, call.arguments))
            self._calls[call.id] = task
            while len(self._calls) > MAX_REMEMBERED_CALLS:
                self._calls.popitem(last=False)
        return task

    async def execute(self, name: str, arguments: str) -> str:
        """Run one call; whatever goes wrong is described in the output instead of raised."""
        entry = self.functions.get(name)
        if entry is None:
            known = ", ".join(sorted(self.functions)) or "none"
            return _error(f"There is no function named {name!r} (functions: {known}).")
        try:
            values = json.loads(arguments or "{}")
        except json.JSONDecodeError as err:
            return _error(f"The arguments are not valid JSON: {err}.")
        try:
            validated = entry.arguments.model_validate(values)
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                                 for e in err.errors())
            return _error(f"Invalid arguments for {name}: {problems}.")
        kwargs = {field: getattr(validated, field) for field in type(validated).model_fields}
        try:
            result = await _call(entry.func, kwargs)
        except Exception as err:
            return _error(f"{name} raised {type(err).__name__}: {err}")
        return result if isinstance(result, str) else json.dumps(result, default=str)


def _error(message: str) -> str:
    return json.dumps({"error": message})


async def _call(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(func):
        return await func(**kwargs)
    # A sync function may block (I/O, heavy work): keep the event loop streaming meanwhile.
    result = await asyncio.to_thread(func, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def describe(func: Callable[..., Any], name: str | None = None,
             description: str | None = None) -> RegisteredFunction:
    """The schema of ``func`` from its signature, type hints and docstring."""
    summary, params = _parse_docstring(inspect.getdoc(func) or "")
    hints = get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(
            default, description=params.get(param.name)))
    model = pydantic.create_model(f"{func.__name__}_arguments",
                                  __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    return RegisteredFunction(name or func.__name__, description or summary, func, model)


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Raises|Yields|Examples?)\s*:\s*$")
_GOOGLE_PARAM = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[\w\[\], ]+\s+)?(\w+)\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or Sphinx-style docstring."""
    summary = doc.split("\n\n", 1)[0].strip()
    if _SECTION.match(summary.splitlines()[0] if summary else ""):
        summary = ""
    params: dict[str, str] = {}
    section = None
    current = None
    for line in doc.splitlines():
        if match := _SECTION.match(line.strip()):
            section, current = match.group(1), None
            continue
        if match := _SPHINX_PARAM.match(line.strip()):
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif section in ("Args", "Arguments", "Parameters") and (
                match := _GOOGLE_PARAM.match(line)) and line.startswith(("    ", "\t")) \
                and not line.startswith(("        ", "\t\t")):
            current = match.group(1).lstrip("*")
            params[current] = match.group(2).strip()
        elif current and line.strip() and line.startswith((" ", "\t")):
            params[current] = f"{params[current]} {line.strip()}".strip()
        elif not line.strip():
            current = None
    summary = " ".join(summary.split("\n")).strip()
    return summary, params


def _drop_titles(schema: Any) -> None:
    # Titles are pydantic's class names: noise to the model, and they cost tokens.
    if isinstance(schema, dict):
        schema.pop("title", None)
        for key, value in schema.items():
            if key != "properties":
                _drop_titles(value)
            else:
                for prop in value.values():
                    _drop_titles(prop)
    elif isinstance(schema, list):
        for item in schema:
            _drop_titles(item)


default_registry = FunctionRegistry()
function_tool = default_registry.register
_current: ContextVar[FunctionRegistry] = ContextVar("vtai_functions", default=default_registry)


def import_functions(modules: Iterable[str]) -> None:
    """Import modules (``package.module``) whose ``@function_tool`` functions register
    themselves in the default registry."""
    for name in modules:
        importlib.import_module(name)


def current_registry() -> FunctionRegistry:
    """The registry :func:`process_tool_calls` runs calls with (see :func:`use_functions`)."""
    return _current.get()


@contextmanager
def use_functions(registry: FunctionRegistry) -> Iterator[FunctionRegistry]:
    """Run tool calls with ``registry`` instead of the default one, within this block."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)


async def process_tool_calls(step_details: Any) -> list[ToolOutput]:
    """Run the pending function calls of a step (a run step's ``step_details``, or a run's
    ``required_action.submit_tool_outputs``) with the current function registry. A call whose
    output the step already has is skipped; a call already run here is not run again.

    Returns the tool outputs (``[{"tool_call_id", "output"}]``) for :func:`submit_tool_outputs`."""
    return await current_registry().run(pending_calls(step_details))


def pending_calls(step_details: Any) -> list[PendingCall]:
    calls = []
    for call in getattr(step_details, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        if getattr(call, "type", None) != "function" or function is None:
            continue
        if getattr(function, "output", None) is None:
            calls.append(PendingCall(call.id, function.name, function.arguments or ""))
    return calls

