"""Executing one turn of a run: from a queued run to its next pause (requires_action) or end.

The turn rebuilds the prompt from what is stored (thread messages and tool-call steps), so a
run resumed after tool outputs, or by another worker, continues from durable state. Each model
call streams into an accumulator (runs.accumulator), whose pieces become the run's message and
step events; how the message, the steps and the run end is runs.endings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import openai
import orjson

from vtai.server import ids, logs
from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.routing import OpenAnswer, ProviderMissing, Providers
from vtai.server.retrieval.engine import Retrieval
from vtai.server.runs import images, prompt, states, tool_resources
from vtai.server.runs.accumulator import CallNamed, CallOpened, Piece, Reasoning, Text
from vtai.server.runs.chat_request import chat_request, function_names, run_options
from vtai.server.runs.endings import Endings
from vtai.server.runs.model_call import (
    ModelCall,
    RunFailure,
    failure_from_upstream,
    let_request_leave,
)
from vtai.server.runs.records import Conflict, RunRecords
from vtai.server.runs.tokens import Tokenizers
from vtai.server.runs.turn_state import ToolCall, Turn
from vtai.server.store import objects, queries, tables
from vtai.server.store.files import FileStore
from vtai.server.store.sql import Sql
from vtai.server.tools.base import BuiltinTool, ToolContext

log = logging.getLogger("vtai.runs")

# The run's built-in tools by the function name the model sees: (tool, that function).
Builtins = dict[str, tuple[BuiltinTool, dict[str, Any]]]


class _OverPromptLimit(Exception):
    """The prompt is longer than the run's max_prompt_tokens."""


class _OverCompletionLimit(Exception):
    """The run's model calls used up its max_completion_tokens."""


def _answers_in_text(run: dict[str, Any], builtins: Builtins) -> bool:
    """Whether the model can only answer the run in text: no tools, or tool_choice none."""
    return run.get("tool_choice") == "none" or not (builtins or function_names(run))


def _check_tool_names(run: dict[str, Any], turn: Turn, builtins: Builtins) -> None:
    """Every tool the model called must be one the run offers (RunFailure otherwise)."""
    offered = function_names(run) | set(builtins)
    for call in turn.calls.values():
        if call.name not in offered:
            listed = ", ".join(f"'{name}'" for name in sorted(offered)) or "none"
            raise RunFailure("server_error", f"The model called a tool the run does not "
                                             f"offer: '{call.name[:200]}' (offered: {listed}).")


# What a turn reads, on every model call: plain SQL (see store.sql.Sql).
_RUN_PROJECT = Sql("SELECT project_id FROM runs WHERE id = :run_id")
_WAITING_RUNS = Sql("SELECT data FROM runs WHERE status = :status")

MAX_TOOL_ROUNDS = 12  # model calls per turn while it only calls built-in tools
EVENTS_KEPT_SECONDS = 3600  # how long a stream can be resumed (Last-Event-ID)


class Executor:
    def __init__(self, records: RunRecords, providers: Providers, files: FileStore,
                 retrieval: Retrieval, builtins: dict[str, BuiltinTool] | None = None,
                 tokenizers: Tokenizers | None = None) -> None:
        self.records = records
        self.providers = providers
        self.db = records.db
        self.files = files
        self.retrieval = retrieval
        self.builtins = builtins or {}
        self.tokenizers = tokenizers or Tokenizers()
        self.endings = Endings(records, self.builtins)
        self._forgotten_at = 0.0

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
            return await self.endings.cancel(run, Turn())
        if run["status"] not in (states.QUEUED, states.IN_PROGRESS):
            return None
        if project is None:
            project = await self._project(run_id)
        logs.run_id_var.set(run_id)
        logs.thread_id_var.set(run["thread_id"])
        log.info("executing run %s (%s)", run_id, run["status"])
        turn = Turn()
        if run["status"] == states.QUEUED and run.get("started_at") is None:
            turn.steps = {}  # never started: it has no steps yet
        try:
            if run["status"] == states.IN_PROGRESS:
                await self.endings.discard_lost_attempt(run)
            # A queued run turns in_progress while its first model request is on its way
            # (see _model_call).
            return await self._turn(run, project, turn, ahead)
        except (asyncio.CancelledError, Conflict):
            return await self.endings.after_interrupt(run_id, turn)
        except RunFailure as failure:
            return await self.endings.fail(run_id, turn, failure)
        except Exception as err:  # the run must end cleanly whatever went wrong
            log.exception("run %s failed", run_id)
            return await self.endings.fail(run_id, turn,
                                           RunFailure("server_error", f"Internal error: {err}"))

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

    def _enabled_builtins(self, run: dict[str, Any]) -> Builtins:
        """Built-in tools of this run by the function name the model sees."""
        enabled: Builtins = {}
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

    async def _turn(self, run: dict[str, Any], project: str, turn: Turn,
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
            await let_request_leave()
        except BaseException:  # (the request's handler was cancelled): nobody will read it
            call.release()
            raise
        return call

    async def _build_call(self, run: dict[str, Any], builtins: Builtins, used: int,
                          thread_rows: list[tuple[int, str, str]] | None = None) -> ModelCall:
        """The next model request, from what is stored (``thread_rows``: the thread, read
        already); ``used``: completion tokens the run used so far. Raises _OverPromptLimit,
        or ProviderMissing when nothing serves the run's model."""
        messages, tool_steps = await self._load_thread(run, thread_rows)
        route = await self.providers.route(run["model"])
        count = self.tokenizers.count_for(route.model)
        urls = await images.image_urls(messages, self.db, self.files)
        chat, prompt_tokens = prompt.build_messages(run, messages, tool_steps, self._replay,
                                                    count, urls)
        if run.get("max_prompt_tokens") is not None and prompt_tokens > run["max_prompt_tokens"]:
            raise _OverPromptLimit
        options = run_options(run, {tool.type: definition
                                    for tool, definition in builtins.values()})
        first = not any(step["run_id"] == run["id"] for step in tool_steps)
        params = chat_request(route.model, chat, options, used=used, first=first)
        return ModelCall(route, params, prompt_tokens, count)

    async def _model_call(self, run: dict[str, Any], project: str, turn: Turn,
                          builtins: Builtins, ahead: ModelCall | None = None) -> str | None:
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
                    await self.endings.end(tx, run, states.INCOMPLETE, turn,
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
        except (UpstreamError, openai.APIError) as err:
            raise failure_from_upstream(err, provider) from err
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
                               text_turn: Turn | None) -> None:
        await let_request_leave()
        if text_turn is None or text_turn.message is not None \
                or run["status"] != states.QUEUED:
            await self._start(run)
            return
        opened = self.records.new_message(run, project)  # stored with the move
        text_turn.hold(opened)
        text_turn.untouched = opened
        run.update(await self.records.start(run, opened))

    async def _open_and_start(self, run: dict[str, Any], call: ModelCall, project: str,
                              text_turn: Turn | None) -> OpenAnswer:
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

    async def _on_text(self, run: dict[str, Any], project: str, turn: Turn, text: str) -> None:
        delta = {"content": [
            {"index": 0, "type": "text", "text": {"value": text, "annotations": []}}]}
        turn.untouched = None
        if turn.message is None:
            self._open_message(run, project, turn, delta)
        else:
            self.records.delta(run["id"], "thread.message.delta", turn.message["id"], delta)
        turn.text += text
        await turn.stored()

    def _open_message(self, run: dict[str, Any], project: str, turn: Turn,
                      first: dict[str, Any] | None = None) -> None:
        """Announce the message the model answers in (with its ``first`` delta if given)
        and start storing it; the turn's next tokens, and its end, wait for that write
        (Turn.stored)."""
        opened = self.records.open_message(run, project, first)
        turn.hold(opened)
        turn.storing = asyncio.ensure_future(self.records.store_opened(opened))

    async def _on_piece(self, run: dict[str, Any], project: str, turn: Turn, piece: Piece,
                        builtins: Builtins) -> None:
        """A piece of the model's answer (see runs.accumulator). Tool calls are streamed at
        indexes of our own, 0, 1, ... in the order they are streamed (an upstream may number
        from 1, or give two calls one index with different ids), each once its name is
        complete."""
        if isinstance(piece, Text):
            await self._on_text(run, project, turn, piece.text)
        elif isinstance(piece, Reasoning):
            return  # (a run has no place for the model's reasoning)
        elif isinstance(piece, CallOpened):
            if turn.tool_step is None:
                await self._close_message_early(run, turn)
                turn.tool_step = await self.records.create_step(
                    run, project, {"type": "tool_calls", "tool_calls": []})
                turn.made_step(turn.tool_step)
            turn.calls[piece.call] = ToolCall(id=ids.new_id("call_"), draft=piece.call)
        elif isinstance(piece, CallNamed):
            call = turn.calls[piece.call]
            if call.name not in builtins and call.name in function_names(run):
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

    def _place_function(self, run: dict[str, Any], turn: Turn, call: ToolCall) -> None:
        """A function's call is streamed from here on, at the step's next index."""
        call.position = turn.next_position()
        self._step_delta(run, turn, {"index": call.position, **call.step_entry()})

    def _step_delta(self, run: dict[str, Any], turn: Turn, piece: dict[str, Any]) -> None:
        assert turn.tool_step is not None
        self.records.delta(run["id"], "thread.run.step.delta", turn.tool_step["id"],
                           {"step_details": {"type": "tool_calls", "tool_calls": [piece]}})

    async def _close_message_early(self, run: dict[str, Any], turn: Turn) -> None:
        """The model wrote text, then turned to tool calls: its message and the message's
        step complete before the tool_calls step is created, as steps follow one another
        (the SDK's stream helpers keep one current step)."""
        if turn.message is None or turn.message_step is None:
            return
        await turn.stored()
        turn.untouched = None
        async with self.records.changes(gather=True) as tx:
            await self.endings.complete_message(tx, run["id"], turn)
        turn.earlier_text += turn.text
        turn.text = ""
        turn.message = turn.message_step = None

    async def _conclude(self, run: dict[str, Any], project: str, turn: Turn,
                        builtins: Builtins) -> str | None:
        """Store what the model call produced: the run's status when the turn is over, None
        when built-in tools ran and the model is called again."""
        await turn.stored()
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
                await self.endings.complete_message(
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
                    await self.endings.end(
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

    async def _run_builtin(self, run: dict[str, Any], project: str, turn: Turn,
                           call: ToolCall, tool: BuiltinTool) -> None:
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
        ctx = await self._tool_context(run, project, tool, emit)
        started = time.monotonic()
        result = await tool.call(ctx, call.id, call.arguments)
        self.records.metrics.tool_seconds.labels(tool.type).observe(time.monotonic() - started)
        turn.builtin_calls.setdefault(tool.type, []).append(result.call)
        call.entry = result.call

    async def _tool_context(self, run: dict[str, Any], project: str, tool: BuiltinTool,
                            emit: Callable[[dict[str, Any]], None]) -> ToolContext:
        async with self.db.read() as conn:
            assistant = await objects.get_object(conn, tables.assistants, run["assistant_id"],
                                                 project) or {}
            thread = await objects.get_object(conn, tables.threads, run["thread_id"],
                                              project) or {"id": run["thread_id"]}
        messages, _ = await self._load_thread(run)
        entry: dict[str, Any] = next(
            (t for t in run.get("tools") or [] if t["type"] == tool.type), {})

        async def stores() -> list[str]:
            return await tool_resources.store_ids(self.retrieval, project, assistant, thread,
                                                  messages)

        return ToolContext(project=project, session=run["thread_id"], db=self.db,
                           files=self.files, settings=self.providers.settings,
                           options=entry.get(tool.type) or {},
                           input_file_ids=tool_resources.code_files(assistant, thread,
                                                                    messages),
                           store_ids=stores, emit=emit)

    def _expires_after(self) -> int:
        return int(self.providers.settings.run_expires_after)

    async def sweep(self) -> None:
        """The worker's round: runs left waiting for tool outputs past their ``expires_at``
        expire, and events too old to resume a stream from are forgotten."""
        async with self.db.read() as conn:
            rows = (await conn.sql(_WAITING_RUNS, {"status": states.REQUIRES_ACTION})).rows
        now = ids.now()
        for (data,) in rows:
            run: dict[str, Any] = orjson.loads(data)
            if run.get("expires_at") and run["expires_at"] <= now:
                with contextlib.suppress(Conflict):
                    await self.endings.expire(run)
        if time.monotonic() - self._forgotten_at > EVENTS_KEPT_SECONDS / 60:
            self._forgotten_at = time.monotonic()
            await self.records.bus.forget_before(now - EVENTS_KEPT_SECONDS)

    async def give_up(self, run_id: str, message: str) -> None:
        """Fail a run whose workers were lost too many times."""
        await self.endings.give_up(run_id, message)
