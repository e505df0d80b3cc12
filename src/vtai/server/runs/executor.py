"""Executing one turn of a run: from a queued run to its next pause (requires_action) or end.

The turn rebuilds the prompt from what is stored (thread messages and tool-call steps), so a
run resumed after tool outputs, or by another worker, continues from durable state.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson

from vtai.server import ids, logs
from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.routing import OpenAnswer, ProviderMissing, Providers, Route
from vtai.server.runs import images, prompt, states
from vtai.server.runs.accumulator import (
    Accumulator,
    CallDraft,
    CallNamed,
    CallOpened,
    Piece,
    Text,
)
from vtai.server.runs.records import Changes, Conflict, OpenedMessage, RunRecords
from vtai.server.runs.tokens import Count, Tokenizers, estimate
from vtai.server.store import objects, queries, tables
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Sql
from vtai.server.tools.base import BuiltinTool, ToolContext

log = logging.getLogger("vtai.runs")


class RunFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _start_now(coro: Coroutine[Any, Any, OpenAnswer]) -> asyncio.Task[OpenAnswer]:
    """A task for a model request. From Python 3.12 it starts at once and runs up to its wait
    for the answer, aiohttp writing the request on the way (eagerly too), so the request is
    on the wire when ModelCall.send returns; before 3.12 it starts at the event loop's next
    turn (see _let_request_leave). Under load every turn waits behind all that is ready, a
    millisecond or more with a few hundred streams."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.ensure_future(coro)


async def _let_request_leave() -> None:
    """Before Python 3.12, two turns of the event loop, so that a request just started
    (ModelCall.send) leaves now, not when its sender next waits (on SQLite, storing a run
    never does): the first runs the request's task up to its wait for the answer, the second
    the task in which aiohttp writes the body. From 3.12 the request has left already."""
    if sys.version_info >= (3, 12):
        return
    for _ in range(2):
        await asyncio.sleep(0)


class _OverPromptLimit(Exception):
    """The prompt is longer than the run's max_prompt_tokens."""


class _OverCompletionLimit(Exception):
    """The run's model calls used up its max_completion_tokens."""


@dataclass
class _ToolCall:
    id: str
    draft: CallDraft  # the call as the model streams it (see runs.accumulator)
    # Its index in the step's tool_calls, as streamed: functions take theirs as they stream,
    # built-in tools when they run.
    position: int | None = None
    entry: dict[str, Any] | None = None  # a built-in tool's call as the step holds it

    @property
    def name(self) -> str:
        return self.draft.name

    @property
    def arguments(self) -> str:
        return self.draft.arguments

    def step_entry(self) -> dict[str, Any]:
        """The call as the tool_calls step holds it."""
        if self.entry is not None:
            return self.entry
        return {"id": self.id, "type": "function", "function": {
            "name": self.name, "arguments": self.arguments, "output": None}}


@dataclass
class ModelCall:
    """A model request ready to go, or already sent (``opening``, see Executor.send_ahead)."""

    route: Route
    params: dict[str, Any]
    prompt_tokens: int
    count: Count = estimate  # the model's tokens in a text (see runs.tokens)
    opening: asyncio.Future[OpenAnswer] | None = None
    started: float = field(default_factory=time.monotonic)

    def send(self) -> asyncio.Future[OpenAnswer]:
        """Start the request (see _start_now)."""
        self.opening = _start_now(self.route.open_chat(self.params))
        return self.opening

    def release(self) -> None:
        """Give up a request that was sent and will not be read."""
        opening, self.opening = self.opening, None
        if opening is None:
            return
        if not opening.done():
            opening.cancel()
        elif not opening.cancelled() and opening.exception() is None:
            opening.result().release()


@dataclass
class _Turn:
    """What one model call produced so far."""

    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    text: str = ""
    tool_step: dict[str, Any] | None = None
    answer: Accumulator = field(default_factory=Accumulator)  # the model call's answer
    # The model's tool calls in the order they came, by the draft each one streams into.
    calls: dict[CallDraft, _ToolCall] = field(default_factory=dict)
    earlier_text: str = ""  # of a message closed when the model turned to tool calls
    usage: dict[str, int] | None = None
    # calls of built-in tools made since the run's last message, by tool type
    builtin_calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The run's steps by id, as they change, when this turn made all of them (the run's
    # first turn): its end need not read them back. None: they are read.
    steps: dict[str, dict[str, Any]] | None = None
    # The write of the message's and its step's rows, while it is under way (see
    # Executor._open_message).
    storing: asyncio.Task[None] | None = None
    # The message a text answer goes into, opened with the run's start, until the model's
    # first token (see Executor._open_and_start).
    untouched: OpenedMessage | None = None

    def made_step(self, step: dict[str, Any]) -> None:
        if self.steps is not None:
            self.steps[step["id"]] = step

    @property
    def finish_reason(self) -> str | None:
        return self.answer.finish_reason

    def next_position(self) -> int:
        """The tool_calls index the next call streamed takes."""
        return sum(call.position is not None for call in self.calls.values())

    def step_calls(self) -> list[dict[str, Any]]:
        """The tool calls streamed so far, as the step holds them, in their streamed order."""
        placed = sorted((c for c in self.calls.values() if c.position is not None),
                        key=lambda c: c.position or 0)
        return [c.step_entry() for c in placed]

    def next_model_call(self) -> None:
        """Start another model call in the same turn (after built-in tools ran)."""
        self.message = self.message_step = self.tool_step = None
        self.text = self.earlier_text = ""
        self.answer = Accumulator()
        self.calls = {}
        self.usage = None


def _error_from_upstream(err: Exception, provider: str) -> RunFailure:
    """From ChatStreams (UpstreamError) or an SDK client (LiteLLM's, openai errors), of the
    provider named ``provider``."""
    status = err.status if isinstance(err, UpstreamError) else \
        err.status_code if isinstance(err, openai.APIStatusError) else None
    who = f"The model provider '{provider}'"
    if status == 429:
        return RunFailure("rate_limit_exceeded", f"{who} is rate limiting: {err}")
    if status == 400:
        return RunFailure("invalid_prompt", f"{who} rejected the request: {err}")
    if isinstance(err, UpstreamError) and err.empty:
        return RunFailure("server_error", f"{who} sent nothing: {err}")
    if isinstance(err, openai.APIConnectionError) or (
            isinstance(err, UpstreamError) and err.unreachable):
        return RunFailure("server_error", f"{who} could not be reached: {err}")
    if isinstance(err, UpstreamError | openai.APIError):
        return RunFailure("server_error", f"{who} failed: {err}")
    return RunFailure("server_error", f"{who} sent an answer that could not be read: {err}")


# OpenAI's reasoning models: they take max_completion_tokens (not max_tokens) and
# reasoning_effort, and refuse temperature and top_p other than their default.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def _function_tools(run: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for tool in run.get("tools") or []:
        if tool["type"] == "function":
            fn = {k: v for k, v in tool["function"].items() if v is not None}
            tools.append({"type": "function", "function": fn})
    return tools


def _function_names(run: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in _function_tools(run)}


def _check_tool_names(run: dict[str, Any], turn: _Turn,
                      builtins: dict[str, tuple[Any, dict[str, Any]]]) -> None:
    """Every tool the model called must be one the run offers (RunFailure otherwise)."""
    offered = _function_names(run) | set(builtins)
    for call in turn.calls.values():
        if call.name not in offered:
            listed = ", ".join(f"'{name}'" for name in sorted(offered)) or "none"
            raise RunFailure("server_error", f"The model called a tool the run does not "
                                             f"offer: '{call.name[:200]}' (offered: {listed}).")


def _tool_choice(run: dict[str, Any], builtins: dict[str, tuple[Any, dict[str, Any]]]) -> Any:
    choice = run.get("tool_choice")
    if choice in (None, "auto"):
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    if isinstance(choice, dict):  # {"type": "code_interpreter"}: the tool's function name
        for name, (tool, _) in builtins.items():
            if tool.type == choice.get("type"):
                return {"type": "function", "function": {"name": name}}
        return None
    return choice if isinstance(choice, str) else None


def _response_format(run: dict[str, Any]) -> Any:
    value = run.get("response_format")
    if value in (None, "auto"):
        return None
    if isinstance(value, dict) and isinstance(value.get("json_schema"), dict):
        schema = {k: v for k, v in value["json_schema"].items() if v is not None}
        return {**value, "json_schema": schema}
    return value


def _hold(turn: _Turn, opened: OpenedMessage) -> None:
    """The turn holds its message and step before they are stored: if it is interrupted
    meanwhile, what was stored of them is closed (see Executor._close_open_objects)."""
    turn.message_step, turn.message = opened.step, opened.message
    turn.made_step(opened.step)


def _answers_in_text(run: dict[str, Any], builtins: dict[str, Any]) -> bool:
    """Whether the model can only answer the run in text: no tools, or tool_choice none."""
    return run.get("tool_choice") == "none" or not (builtins or _function_tools(run))


def _step_error(error: dict[str, str] | None) -> dict[str, str] | None:
    """A run's last_error as its steps' (whose codes are server_error and
    rate_limit_exceeded only)."""
    if error is None or error["code"] in ("server_error", "rate_limit_exceeded"):
        return error
    return {**error, "code": "server_error"}


def _sum_usage(usages: list[dict[str, int] | None]) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for usage in usages:
        for key in total:
            total[key] += int((usage or {}).get(key) or 0)
    return total


# What a turn reads, on every model call: plain SQL (see store.db.Sql).
_RUN_PROJECT = Sql("SELECT project_id FROM runs WHERE id = :run_id")

MAX_TOOL_ROUNDS = 12  # model calls per turn while it only calls built-in tools


class Executor:
    def __init__(self, records: RunRecords, providers: Providers, blobs: BlobStore,
                 builtins: dict[str, BuiltinTool] | None = None,
                 tokenizers: Tokenizers | None = None) -> None:
        self.records = records
        self.providers = providers
        self.db = records.db
        self.blobs = blobs
        self.builtins = builtins or {}
        self.tokenizers = tokenizers or Tokenizers()

    async def execute(self, run_id: str, run: dict[str, Any] | None = None,
                      project: str | None = None, ahead: ModelCall | None = None
                      ) -> str | None:
        """Take a queued (or cancelling) run through one turn; an in_progress run is one
        whose worker died, and its turn starts again from what is stored. ``run`` and
        ``project``, when the caller has them, save reading them again; ``ahead`` is the
        turn's first model call if it was sent already (see send_ahead; the caller releases
        it if the turn did not read it). Returns the status the run was left in by this turn
        (None if it was not executed)."""
        if run is None:
            run = await self.records.load(run_id)
        if run is None:
            return None
        if run["status"] == states.CANCELLING:
            return await self._finish_cancel(run, _Turn())
        if run["status"] not in (states.QUEUED, states.IN_PROGRESS):
            return None
        if project is None:
            project = await self._project(run_id)
        logs.run_id_var.set(run_id)
        logs.thread_id_var.set(run["thread_id"])
        log.info("executing run %s (%s)", run_id, run["status"])
        turn = _Turn()
        if run["status"] == states.QUEUED and run.get("started_at") is None:
            turn.steps = {}  # never started: it has no steps yet
        try:
            if run["status"] == states.IN_PROGRESS:
                await self._discard_lost_attempt(run)
            # A queued run turns in_progress while its first model request is on its way
            # (see _model_call).
            return await self._turn(run, project, turn, ahead)
        except asyncio.CancelledError:
            return await self._after_interrupt(run_id, turn)
        except Conflict:
            return await self._after_interrupt(run_id, turn)
        except RunFailure as failure:
            return await self._fail(run_id, turn, failure)
        except Exception as err:  # the run must end cleanly whatever went wrong
            log.exception("run %s failed", run_id)
            return await self._fail(run_id, turn,
                                    RunFailure("server_error", f"Internal error: {err}"))

    async def _discard_lost_attempt(self, run: dict[str, Any]) -> None:
        """Remove what a dead worker left half made (unfinished messages and steps), so the
        turn runs again without duplicating them. Finished steps stay: they are durable."""
        m, s = tables.messages, tables.run_steps
        log.warning("run %s: resuming after its worker was lost", run["id"])
        async with self.records.changes() as tx:
            unfinished = [step["id"] for step in await tx.run_steps(run["id"])
                          if step["status"] == "in_progress"]
            if unfinished:
                await objects.delete_objects(tx.conn, s, s.c.id.in_(unfinished))
            partial = await tx.open_messages(run["id"])
            if partial:
                await objects.delete_objects(tx.conn, m, m.c.id.in_(partial))

    async def _project(self, run_id: str) -> str:
        async with self.db.read() as conn:
            return str((await conn.sql(_RUN_PROJECT, {"run_id": run_id})).scalar())

    async def _load_thread(self, run: dict[str, Any],
                           rows: list[tuple[int, str, str]] | None = None
                           ) -> tuple[list[Any], list[Any]]:
        """The thread's messages and the tool steps a prompt replays; from ``rows``
        (queries.THREAD_ROWS, read already) if given."""
        if rows is None:
            async with self.db.read() as conn:
                rows = (await conn.sql(queries.THREAD_ROWS,
                                       {"thread_id": run["thread_id"]})).rows
        messages, tool_steps = [], []
        for kind, _, data in rows:
            if kind == 0:
                messages.append(orjson.loads(data))
                continue
            step = orjson.loads(data)
            if step["type"] != "tool_calls":
                continue
            if step["status"] == "completed" or (
                    step["run_id"] == run["id"] and step["status"] == "in_progress"):
                tool_steps.append(step)
        return messages, tool_steps

    def _enabled_builtins(self, run: dict[str, Any]) -> dict[str, tuple[BuiltinTool, dict]]:
        """Built-in tools of this run by the function name the model sees."""
        enabled: dict[str, tuple[BuiltinTool, dict[str, Any]]] = {}
        for entry in run.get("tools") or []:
            tool = self.builtins.get(entry["type"])
            if tool is not None:
                definition = tool.definition(entry)
                enabled[definition["function"]["name"]] = (tool, definition)
        return enabled

    def _replay(self, call: dict[str, Any]) -> tuple[str, str, str] | None:
        tool = self.builtins.get(call.get("type", ""))
        if tool is None:
            return prompt.replay_function(call)
        arguments, output = tool.replay(call)
        return tool.definition({"type": tool.type})["function"]["name"], arguments, output

    async def _turn(self, run: dict[str, Any], project: str, turn: _Turn,
                    ahead: ModelCall | None = None) -> str:
        builtins = self._enabled_builtins(run)
        for _ in range(MAX_TOOL_ROUNDS):
            status = await self._model_call(run, project, turn, builtins, ahead)
            ahead = None
            if status is not None:
                return status
            turn.next_model_call()
        raise RunFailure("server_error", f"The model called built-in tools more than "
                                         f"{MAX_TOOL_ROUNDS} times in a row.")

    async def send_ahead(self, run: dict[str, Any],
                         thread_rows: list[tuple[int, str, str]]) -> ModelCall | None:
        """The first model call of a run that is being created, sent at once: the model works
        while the run is stored. For a run of this process's worker whose thread holds all of
        its messages already, as ``thread_rows`` (queries.THREAD_ROWS). None when the call
        is not sent ahead (a prompt over ``max_prompt_tokens``, no provider for the model):
        the turn then deals with it."""
        try:
            call = await self._build_call(run, self._enabled_builtins(run), used=0,
                                          thread_rows=thread_rows)
        except (_OverPromptLimit, ProviderMissing):
            return None
        call.send()
        try:
            await _let_request_leave()
        except BaseException:  # (the request's handler was cancelled): nobody will read it
            call.release()
            raise
        return call

    async def _build_call(self, run: dict[str, Any],
                          builtins: dict[str, tuple[BuiltinTool, dict[str, Any]]], used: int,
                          thread_rows: list[tuple[int, str, str]] | None = None) -> ModelCall:
        """The next model request, from what is stored (``thread_rows``: the thread, read
        already); ``used``: completion tokens the run used so far. Raises _OverPromptLimit,
        or ProviderMissing when nothing serves the run's model."""
        messages, tool_steps = await self._load_thread(run, thread_rows)
        route = await self.providers.route(run["model"])
        count = self.tokenizers.count_for(route.model)
        urls = await images.image_urls(messages, self.db, self.blobs)
        chat, prompt_tokens = prompt.build_messages(run, messages, tool_steps, self._replay,
                                                    count, urls)
        if run.get("max_prompt_tokens") is not None and prompt_tokens > run["max_prompt_tokens"]:
            raise _OverPromptLimit
        # A tool_choice that forces a tool applies to the run's first model call: once the
        # model has called tools, it answers as it sees fit (else it could never end).
        first = not any(step["run_id"] == run["id"] for step in tool_steps)
        return ModelCall(route, self._params(run, route, chat, builtins, used, first),
                         prompt_tokens, count)

    def _params(self, run: dict[str, Any], route: Route, chat: list[dict[str, Any]],
                builtins: dict[str, tuple[BuiltinTool, dict[str, Any]]], used: int,
                first: bool) -> dict[str, Any]:
        """The chat completion request; ``used``: completion tokens the run used so far;
        ``first``: the run's first model call."""
        params: dict[str, Any] = {"model": route.model, "messages": chat, "stream": True,
                                  "stream_options": {"include_usage": True}}
        tools = _function_tools(run) + [definition for _, definition in builtins.values()]
        if tools:
            params["tools"] = tools
            if run.get("parallel_tool_calls") is False:
                params["parallel_tool_calls"] = False
            choice = _tool_choice(run, builtins)
            if choice is not None and (first or choice == "none"):
                params["tool_choice"] = choice
        for key in ("temperature", "top_p"):  # 1.0, the API's default, leaves the model's
            if run.get(key) is not None and run[key] != 1.0:
                params[key] = run[key]
        if (fmt := _response_format(run)) is not None:
            params["response_format"] = fmt
        reasoning = _REASONING_MODEL.match(route.model) is not None
        if run.get("max_completion_tokens") is not None:
            budget = max(1, run["max_completion_tokens"] - used)
            params["max_completion_tokens" if reasoning else "max_tokens"] = budget
        if run.get("reasoning_effort") is not None:
            params["reasoning_effort"] = run["reasoning_effort"]
        return params

    async def _model_call(self, run: dict[str, Any], project: str, turn: _Turn,
                          builtins: dict[str, tuple[BuiltinTool, dict[str, Any]]],
                          ahead: ModelCall | None = None) -> str | None:
        """One model call and what follows it: the status the run was left in, or None
        when built-in tools ran and the model must be called again. ``ahead``: the call,
        sent already (see send_ahead)."""
        if ahead is not None:
            call = ahead
        else:
            used = 0
            if run.get("max_completion_tokens") is not None:
                used = sum(int((s.get("usage") or {}).get("completion_tokens") or 0)
                           for s in await self.records.run_steps(run["id"]))
            try:
                limit = run.get("max_completion_tokens")
                if limit is not None and used >= limit:
                    raise _OverCompletionLimit
                call = await self._build_call(run, builtins, used)
            except (_OverPromptLimit, _OverCompletionLimit) as over:
                reason = "max_prompt_tokens" if isinstance(over, _OverPromptLimit) else \
                    "max_completion_tokens"
                await self._start(run)
                async with self.records.changes() as tx:
                    await self._end(tx, run, states.INCOMPLETE, turn,
                                    incomplete_details={"reason": reason})
                return states.INCOMPLETE
            except ProviderMissing as err:
                await self._start(run)
                raise RunFailure("server_error", str(err)) from err
        prompt_tokens, count, provider = call.prompt_tokens, call.count, call.route.provider

        metrics = self.records.metrics
        started = call.started
        first_token = True
        try:
            answer = await self._open_and_start(
                run, call, project, turn if _answers_in_text(run, builtins) else None)
            async with aclosing(answer.chunks()) as chunks:
                async for chunk in chunks:
                    if first_token and chunk.get("choices"):
                        first_token = False
                        metrics.upstream_seconds.labels("first_token").observe(
                            time.monotonic() - started)
                    for piece in turn.answer.feed(chunk):
                        await self._on_piece(run, project, turn, piece, builtins)
        except (UpstreamError, openai.APIError, ValueError, AttributeError, TypeError) as err:
            raise _error_from_upstream(err, provider) from err
        metrics.upstream_seconds.labels("total").observe(time.monotonic() - started)
        turn.usage = turn.answer.usage
        if turn.usage is None:
            completion = count(turn.earlier_text + turn.text
                               + "".join(c.name + c.arguments for c in turn.answer.calls))
            turn.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion}
        return await self._conclude(run, project, turn, builtins)

    async def _start(self, run: dict[str, Any]) -> None:
        """queued -> in_progress, once; ``run`` (shared by the whole turn) is updated."""
        if run["status"] == states.QUEUED:
            run.update(await self.records.start(run))

    async def _start_once_sent(self, run: dict[str, Any], project: str,
                               text_turn: _Turn | None) -> None:
        await _let_request_leave()
        if text_turn is None or text_turn.message is not None \
                or run["status"] != states.QUEUED:
            await self._start(run)
            return
        opened = self.records.new_message(run, project)  # stored with the move
        _hold(text_turn, opened)
        text_turn.untouched = opened
        run.update(await self.records.start(run, opened))

    async def _open_and_start(self, run: dict[str, Any], call: ModelCall, project: str,
                              text_turn: _Turn | None) -> OpenAnswer:
        """Send the model request (unless it was sent ahead), and store the run as
        in_progress while the model works on it: the request goes out first and the write is
        not added to the time to the first token. The answer is read only after the run's
        status is stored, so its events come after ``thread.run.in_progress``.

        ``text_turn``: the model can only answer in text (see _answers_in_text), so the
        message it answers in is opened now too, while the model works, stored in the same
        statement as the run's start: the client has its creation events (and a UI its
        empty message) before the first token, which then comes alone (the SDK parses one
        event for it, not five). If the run ends before the first token, the message and
        its step are removed (see _close_open_objects)."""
        opening = call.opening if call.opening is not None else call.send()
        call.opening = None  # the turn reads it, or releases it
        starting = asyncio.ensure_future(self._start_once_sent(run, project, text_turn))
        try:
            answer = await opening
        except asyncio.CancelledError:
            opening.cancel()
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            raise
        except Exception:
            await starting  # the run fails from in_progress (or a Conflict takes over)
            raise
        try:
            await starting
        except BaseException:
            answer.release()
            raise
        return answer

    async def _on_text(self, run: dict[str, Any], project: str, turn: _Turn, text: str) -> None:
        delta = {"content": [
            {"index": 0, "type": "text", "text": {"value": text, "annotations": []}}]}
        turn.untouched = None
        if turn.message is None:
            self._open_message(run, project, turn, delta)
        else:
            self.records.delta(run["id"], "thread.message.delta", turn.message["id"], delta)
        turn.text += text
        await self._stored(turn)

    def _open_message(self, run: dict[str, Any], project: str, turn: _Turn,
                      first: dict[str, Any] | None = None) -> None:
        """Announce the message the model answers in (with its ``first`` delta if given)
        and start storing it; the turn's next tokens, and its end, wait for that write
        (_stored)."""
        opened = self.records.open_message(run, project, first)
        _hold(turn, opened)
        turn.storing = asyncio.ensure_future(self.records.store_opened(opened))

    @staticmethod
    async def _stored(turn: _Turn, whatever_came: bool = False) -> None:
        """Wait for the write of the turn's message, if it is under way: its failure fails
        the run, unless ``whatever_came`` (the run is ending: before the transaction that
        closes what is stored, which on SQLite that write would wait for otherwise)."""
        storing, turn.storing = turn.storing, None
        if storing is None:
            return
        if whatever_came:
            await asyncio.gather(storing, return_exceptions=True)
        else:
            await storing

    async def _on_piece(self, run: dict[str, Any], project: str, turn: _Turn, piece: Piece,
                        builtins: dict[str, Any]) -> None:
        """A piece of the model's answer (see runs.accumulator). Tool calls are streamed at
        indexes of our own, 0, 1, ... in the order they are streamed (an upstream may number
        from 1, or give two calls one index with different ids), each once its name is
        complete."""
        if isinstance(piece, Text):
            await self._on_text(run, project, turn, piece.text)
        elif isinstance(piece, CallOpened):
            if turn.tool_step is None:
                await self._close_message_early(run, turn)
                turn.tool_step = await self.records.create_step(
                    run, project, {"type": "tool_calls", "tool_calls": []})
                turn.made_step(turn.tool_step)
            turn.calls[piece.call] = _ToolCall(id=ids.new_id("call_"), draft=piece.call)
        elif isinstance(piece, CallNamed):
            call = turn.calls[piece.call]
            if call.name not in builtins and call.name in _function_names(run):
                self._place_function(run, turn, call)
            # (a built-in tool's call is streamed in the tool's own shape when it runs; one
            # of a tool the run does not offer fails the run when the answer ends)
        else:
            call = turn.calls[piece.call]
            if call.position is None:
                return
            function: dict[str, Any] = {"arguments": piece.arguments}
            if piece.name:  # (a name still growing after its arguments began: the SDK joins)
                function["name"] = piece.name
            self._step_delta(run, turn, {"index": call.position, "type": "function",
                                         "function": function})

    def _place_function(self, run: dict[str, Any], turn: _Turn, call: _ToolCall) -> None:
        """A function's call is streamed from here on, at the step's next index."""
        call.position = turn.next_position()
        self._step_delta(run, turn, {"index": call.position, **call.step_entry()})

    def _step_delta(self, run: dict[str, Any], turn: _Turn, piece: dict[str, Any]) -> None:
        assert turn.tool_step is not None
        self.records.delta(run["id"], "thread.run.step.delta", turn.tool_step["id"],
                           {"step_details": {"type": "tool_calls", "tool_calls": [piece]}})

    async def _close_message_early(self, run: dict[str, Any], turn: _Turn) -> None:
        """The model wrote text, then turned to tool calls: its message and the message's
        step complete before the tool_calls step is created, as steps follow one another
        (the SDK's stream helpers keep one current step)."""
        if turn.message is None or turn.message_step is None:
            return
        await self._stored(turn)
        turn.untouched = None
        async with self.records.changes(gather=True) as tx:
            await self._complete_message(tx, run["id"], turn)
        turn.earlier_text += turn.text
        turn.text = ""
        turn.message = turn.message_step = None

    async def _conclude(self, run: dict[str, Any], project: str, turn: _Turn,
                        builtins: dict[str, tuple[BuiltinTool, dict[str, Any]]]
                        ) -> str | None:
        """Store what the model call produced: the run's status when the turn is over, None
        when built-in tools ran and the model is called again."""
        await self._stored(turn)
        turn.untouched = None  # (an empty answer: its message completes empty)
        for piece in turn.answer.close():
            await self._on_piece(run, project, turn, piece, builtins)
        truncated = turn.finish_reason == "length"
        filtered = turn.finish_reason == "content_filter"
        if not (truncated or filtered):  # (a call cut off may have half a name)
            _check_tool_names(run, turn, builtins)
        ends = truncated or filtered or not turn.calls or turn.tool_step is None
        if ends or turn.message is not None:  # (a model call that only called tools: no text)
            async with self.records.changes(gather=True) as tx:
                cut = "max_tokens" if truncated else "content_filter" if filtered else None
                await self._complete_message(
                    tx, run["id"], turn, "incomplete" if cut else "completed",
                    {"reason": cut} if cut else None, None if turn.calls else turn.usage)
                if ends and turn.tool_step is not None:
                    # cut off while calling tools: the calls streamed so far will not run
                    turn.tool_step.update(status="cancelled", cancelled_at=ids.now(),
                                          usage=turn.usage)
                    turn.tool_step["step_details"]["tool_calls"] = turn.step_calls()
                    turn.made_step(await tx.save_step(turn.tool_step, "cancelled"))
                if ends:
                    status = states.INCOMPLETE if truncated else states.COMPLETED
                    await self._end(
                        tx, run, status, turn,
                        **({"incomplete_details": {"reason": "max_completion_tokens"}}
                           if truncated else {}))
                    return status
        assert turn.tool_step is not None

        for call in turn.calls.values():
            if call.position is None:  # a built-in tool's
                await self._run_builtin(run, project, turn, call, builtins[call.name][0])
        step_calls = turn.step_calls()
        turn.tool_step["step_details"]["tool_calls"] = step_calls
        turn.tool_step["usage"] = turn.usage
        pending = [c for c in step_calls if c["type"] == "function"]
        async with self.records.changes(gather=True) as tx:
            if not pending:
                turn.tool_step.update(status="completed", completed_at=ids.now())
                turn.tool_step = await tx.save_step(turn.tool_step, "completed")
                turn.made_step(turn.tool_step)
                return None
            turn.tool_step = await tx.save_step(turn.tool_step)
            turn.made_step(turn.tool_step)
            required = [{"id": c["id"], "type": "function",
                         "function": {"name": c["function"]["name"],
                                      "arguments": c["function"]["arguments"]}}
                        for c in pending]
            await tx.move(run, states.REQUIRES_ACTION, required_action={
                "type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": required},
            }, expires_at=ids.now() + self._expires_after())
        return states.REQUIRES_ACTION

    async def _run_builtin(self, run: dict[str, Any], project: str, turn: _Turn,
                           call: _ToolCall, tool: BuiltinTool) -> None:
        """Run a built-in tool's call, streamed at the step's next index; ``call.entry``
        holds it as the step does (its first shape while it runs)."""
        index = call.position = turn.next_position()

        def emit(fields: dict[str, Any], first: bool = False) -> None:
            # The SDK concatenates string fields of deltas merged by index: the id goes once.
            piece = {"index": index, **({"id": call.id} if first else {}), "type": tool.type,
                     **fields}
            self._step_delta(run, turn, piece)

        call.entry = tool.initial_call(call.id, call.arguments)
        emit({k: v for k, v in call.entry.items() if k not in ("id", "type")}, first=True)
        ctx = await self._tool_context(run, project, emit)
        started = time.monotonic()
        result = await tool.call(ctx, call.id, call.arguments)
        self.records.metrics.tool_seconds.labels(tool.type).observe(time.monotonic() - started)
        turn.builtin_calls.setdefault(tool.type, []).append(result.call)
        call.entry = result.call

    async def _tool_context(self, run: dict[str, Any], project: str,
                            emit: Callable[[dict[str, Any]], None]) -> ToolContext:
        async with self.db.read() as conn:
            assistant = await objects.get_object(conn, tables.assistants, run["assistant_id"],
                                                 project) or {}
            thread = await objects.get_object(conn, tables.threads, run["thread_id"],
                                              project) or {}
        messages, _ = await self._load_thread(run)
        return ToolContext(run=run, project=project, assistant=assistant, thread=thread,
                           messages=messages, db=self.db, blobs=self.blobs,
                           settings=self.providers.settings, emit=emit)

    def _expires_after(self) -> int:
        return int(self.providers.settings.run_expires_after)

    async def _end(self, tx: Changes, run: dict[str, Any], status: str, turn: _Turn,
                   **changes: Any) -> None:
        steps = list(turn.steps.values()) if turn.steps is not None else \
            await tx.run_steps(run["id"])
        usages = [s.get("usage") for s in steps]
        if turn.message_step is None and turn.tool_step is None:
            usages.append(turn.usage)
        await tx.move(run, status, usage=_sum_usage(usages), required_action=None, **changes)

    async def _complete_message(self, tx: Changes, run_id: str, turn: _Turn,
                                status: str = "completed",
                                incomplete: dict[str, str] | None = None,
                                usage: dict[str, int] | None = None) -> None:
        """End the turn's message (``status``) and complete its step (with ``usage``: the
        model call's when it only wrote the message)."""
        if turn.message is not None:
            await self._close_message(tx, turn, status, incomplete, run_id)
        if turn.message_step is not None:
            turn.message_step.update(status="completed", completed_at=ids.now(), usage=usage)
            await tx.save_step(turn.message_step, "completed")

    async def _close_message(self, tx: Changes, turn: _Turn, status: str,
                             incomplete: dict[str, str] | None, run_id: str) -> None:
        """Store the turn's message as it ends. What the built-in tools add to it (citations,
        files) is streamed first, as a delta of the parts it adds to."""
        assert turn.message is not None
        now = ids.now()
        annotations: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for tool_type, calls in turn.builtin_calls.items():
            if tool_type in self.builtins:
                added = self.builtins[tool_type].message_additions(turn.text, calls)
                annotations += added.annotations
                parts += added.parts
        turn.builtin_calls = {}
        # the text first: it streamed as content index 0 (none streamed: no text part,
        # unless the answer completed with nothing at all: then an empty one)
        text = [{"type": "text", "text": {"value": turn.text, "annotations": annotations}}] \
            if turn.text or annotations or (status == "completed" and not parts) else []
        added_parts = [{"index": index, **part} for index, part in enumerate(parts, len(text))]
        if annotations:  # (value "": handlers print delta.value)
            added_parts.insert(0, {"index": 0, "type": "text", "text": {
                "value": "", "annotations": [{"index": index, **annotation}
                                             for index, annotation in enumerate(annotations)]}})
        if added_parts:
            self.records.delta(run_id, "thread.message.delta", turn.message["id"],
                               {"content": added_parts})
        turn.message.update(
            content=[*text, *parts],
            status=status, incomplete_details=incomplete,
            completed_at=now if status == "completed" else None,
            incomplete_at=now if status == "incomplete" else None,
        )
        turn.message = await tx.save_message(turn.message, status)

    async def _close_open_objects(self, tx: Changes, run_id: str, turn: _Turn,
                                  step_status: str, reason: str,
                                  error: dict[str, str] | None = None) -> dict[str, int]:
        """End the turn's message and every step of the run still in progress (after
        _stored: what the turn's message write stored is then closed). The run's usage: its
        steps' together."""
        if turn.untouched is not None:
            # The model never began its answer: its message (announced early) and the step
            # go, no event closes them, and nothing stored is left of it (as of OpenAI's).
            await tx.remove_opened(turn.untouched)
            if turn.steps is not None:
                turn.steps.pop(turn.untouched.step["id"], None)
            turn.untouched = turn.message = turn.message_step = None
        # What is stored decides (a transaction that failed may have changed the turn's copy).
        if turn.message is not None and turn.message["id"] in await tx.open_messages(run_id):
            await self._close_message(tx, turn, "incomplete", {"reason": reason}, run_id)
        if turn.tool_step is not None and turn.calls:
            turn.tool_step["step_details"]["tool_calls"] = turn.step_calls()
        stamp = {"cancelled": "cancelled_at", "failed": "failed_at", "expired": "expired_at"}
        steps = {s["id"]: s for s in await tx.run_steps(run_id)}
        for step in (turn.message_step, turn.tool_step):
            if step is not None and step["id"] in steps \
                    and steps[step["id"]]["status"] == "in_progress":
                steps[step["id"]] = step  # the turn's copy holds what streamed
        for step in steps.values():
            if step["status"] == "in_progress":
                step.update(status=step_status, last_error=_step_error(error))
                step[stamp[step_status]] = ids.now()
                await tx.save_step(step, step_status)
        return _sum_usage([s.get("usage") for s in steps.values()])

    async def _after_interrupt(self, run_id: str, turn: _Turn) -> str | None:
        """The run changed under the turn (a cancel): end it as its stored status says."""
        run = await self.records.load(run_id)
        if run is not None and run["status"] == states.CANCELLING:
            return await self._finish_cancel(run, turn)
        return None if run is None else str(run["status"])

    async def _finish_cancel(self, run: dict[str, Any], turn: _Turn) -> str:
        await self._stored(turn, whatever_came=True)
        async with self.records.changes() as tx:
            usage = await self._close_open_objects(tx, run["id"], turn, "cancelled",
                                                   "run_cancelled")
            await tx.move(run, states.CANCELLED, required_action=None, usage=usage)
        return states.CANCELLED

    async def expire(self, run: dict[str, Any]) -> None:
        """A run left waiting for tool outputs past ``expires_at``."""
        async with self.records.changes() as tx:
            usage = await self._close_open_objects(tx, run["id"], _Turn(), "expired",
                                                   "run_expired")
            await tx.move(run, states.EXPIRED, required_action=None, usage=usage)

    async def give_up(self, run_id: str, message: str) -> None:
        """Fail a run whose workers were lost too many times, without what the last one
        left half made."""
        run = await self.records.load(run_id)
        if run is not None and run["status"] == states.IN_PROGRESS:
            await self._discard_lost_attempt(run)
            await self._fail(run_id, _Turn(), RunFailure("server_error", message))

    async def _fail(self, run_id: str, turn: _Turn, failure: RunFailure) -> str | None:
        error = {"code": failure.code, "message": failure.message}
        run = await self.records.load(run_id)
        if run is None:
            return None
        if run["status"] == states.CANCELLING:
            return await self._finish_cancel(run, turn)
        if not states.can_move(run["status"], states.FAILED):
            return str(run["status"])
        await self._stored(turn, whatever_came=True)
        async with self.records.changes() as tx:
            usage = await self._close_open_objects(tx, run_id, turn, "failed", "run_failed",
                                                   error)
            await tx.move(run, states.FAILED, last_error=error, required_action=None,
                          usage=usage)
        return states.FAILED
