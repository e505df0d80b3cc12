"""Executing a response: its model calls over its history of items, with the same request
mapping (runs.chat_request), stream reading (runs.accumulator), built-in tools and upstream
errors as a run, streamed as the Responses API streams (runs.response_stream).

A response ends ``completed`` when the model answers (or calls functions: the client sends
their outputs in the next response), ``incomplete`` when its tokens ran out or a filter cut
it, ``failed`` with its ``error``. Built-in tools run inside it, and the model is called again
with their results. A response whose worker died starts again from its history: its stream
goes on from the last event sent, with the output begun again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from contextlib import aclosing
from typing import Any

import openai

from vtai.server import ids, logs
from vtai.server.metrics import Metrics
from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.routing import ProviderMissing, Providers, Route
from vtai.server.retrieval.engine import Retrieval
from vtai.server.runs import tool_items
from vtai.server.runs.accumulator import (
    Accumulator,
    CallDraft,
    CallNamed,
    CallOpened,
    CallPiece,
    Reasoning,
    Text,
)
from vtai.server.runs.attachments import read_attachments
from vtai.server.runs.chat_request import TurnOptions, chat_request, response_options
from vtai.server.runs.model_call import ModelCall, RunFailure, failure_from_upstream
from vtai.server.runs.response_prompt import Attachments, build_chat
from vtai.server.runs.response_records import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    INCOMPLETE,
    QUEUED,
    TERMINAL_EVENTS,
    ResponseRecords,
    Stored,
)
from vtai.server.runs.response_shape import creation_events, public
from vtai.server.runs.response_stream import ResponseOutput
from vtai.server.runs.tokens import Count, Tokenizers
from vtai.server.store.containers import DATA, ContainerStore
from vtai.server.store.files import FileStore
from vtai.server.tools.base import BuiltinTool, InputFile, ToolContext, ToolResult
from vtai.server.tools.file_search import citations

log = logging.getLogger("vtai.responses")

MAX_MODEL_CALLS = 12  # model calls per response while it only calls built-in tools


class _Builtin:
    """A built-in tool of the response: the tool, its entry in ``tools``, and the function
    the model sees."""

    def __init__(self, tool: BuiltinTool, entry: dict[str, Any]) -> None:
        self.tool = tool
        self.entry = entry
        self.definition = tool.definition(entry)
        self.name: str = self.definition["function"]["name"]


class _Answer:
    """One model call's answer as it streams: the calls it makes, by draft."""

    def __init__(self) -> None:
        self.acc = Accumulator()
        self.call_ids: dict[int, str] = {}  # id(draft) -> the call's id
        self.functions: dict[int, int] = {}  # id(draft) -> its output index

    def call_id(self, draft: CallDraft) -> str:
        return self.call_ids.setdefault(id(draft), draft.upstream_id or ids.new_id("call_"))


class ResponseExecutor:
    def __init__(self, records: ResponseRecords, providers: Providers, files: FileStore,
                 retrieval: Retrieval, metrics: Metrics,
                 builtins: dict[str, BuiltinTool] | None = None,
                 tokenizers: Tokenizers | None = None) -> None:
        self.records = records
        self.containers = ContainerStore(files)
        self.db = records.db
        self.providers = providers
        self.files = files
        self.retrieval = retrieval
        self.metrics = metrics
        self.builtins = builtins or {}
        self.tokenizers = tokenizers or Tokenizers()

    # ------------------------------------------------------------ the worker's side

    async def execute(self, response_id: str, obj: dict[str, Any] | None = None,
                      project: str | None = None, ahead: ModelCall | None = None
                      ) -> str | None:
        """Take a queued response (or one whose worker died) to its end. ``obj``: given when
        this process made it and executes it at once (its stream has only its creation
        events). Returns its status (None when it was not executed)."""
        if obj is not None and project is not None:  # made by this process just now
            conversation = obj.get("conversation")
            stored: Stored | None = Stored(
                obj, project, obj["status"], conversation["id"] if conversation else None,
                obj.get("store") is not False, 0)
        else:
            stored = await self.records.load(response_id)
        if stored is None or stored.status not in ACTIVE:
            return None
        logs.run_id_var.set(response_id)
        fresh = obj is not None or stored.status == QUEUED
        first = creation_events(stored.data) if fresh else \
            await self.records.last_sequence_number(response_id) + 1
        out = ResponseOutput(lambda kind, payload: self.records.publish(
            response_id, kind, payload), first)
        try:
            if stored.status == QUEUED and not await self.records.move(stored, IN_PROGRESS):
                return None
            stored.data["output"] = []
            out.emit("response.in_progress", response=public(stored.data))
            return await self._respond(stored, out)
        except asyncio.CancelledError:
            return None  # a cancel (it ended the response), or the worker is stopping
        except RunFailure as failure:
            return await self._end(stored, out, FAILED, error={
                "code": failure.code, "message": failure.message})
        except Exception as err:  # the response must end cleanly whatever went wrong
            log.exception("response %s failed", response_id)
            return await self._end(stored, out, FAILED, error={
                "code": "server_error", "message": f"Internal error: {err}"})

    async def give_up(self, response_id: str, message: str) -> None:
        stored = await self.records.load(response_id)
        if stored is None or stored.status not in ACTIVE:
            return
        first = await self.records.last_sequence_number(response_id) + 1
        out = ResponseOutput(lambda kind, payload: self.records.publish(
            response_id, kind, payload), first)
        await self._end(stored, out, FAILED, error={"code": "server_error", "message": message})

    async def sweep(self) -> None:
        """(A response has nothing that expires while it waits.)"""

    async def send_ahead(self, obj: dict[str, Any], thread_rows: list[tuple[int, str, str]]
                         ) -> ModelCall | None:
        return None

    # ------------------------------------------------------------------ the turn

    def _builtins(self, data: dict[str, Any]) -> dict[str, _Builtin]:
        enabled: dict[str, _Builtin] = {}
        for entry in data.get("tools") or ():
            tool = self.builtins.get(entry["type"])
            if tool is not None:
                builtin = _Builtin(tool, entry)
                enabled[builtin.name] = builtin
        return enabled

    def _replay(self, item: dict[str, Any]) -> tuple[str, str, str] | None:
        call = tool_items.step_call(item)
        tool = self.builtins.get(call["type"]) if call else None
        if call is None or tool is None:
            return None
        arguments, output = tool.replay(call)
        return tool.definition({"type": tool.type})["function"]["name"], arguments, output

    async def _respond(self, stored: Stored, out: ResponseOutput) -> str:
        data = stored.data
        history = await self.records.history(stored)
        builtins = self._builtins(data)
        try:
            route = await self.providers.route(data["model"])
        except ProviderMissing as err:
            raise RunFailure("server_error", str(err)) from err
        count = self.tokenizers.count_for(route.model)
        attached = await read_attachments(history, stored.project, self.db, self.files)
        include = set(data.get("_include") or ())
        options = response_options(data, {b.tool.type: b.definition for b in builtins.values()},
                                   logprobs="message.output_text.logprobs" in include)
        offered = {t["function"]["name"] for t in options.tools}
        usage = {"input_tokens": 0, "output_tokens": 0}
        tool_calls_left = data.get("max_tool_calls")
        steps: list[dict[str, Any]] = []  # the built-in calls since the last message closed
        for number in range(MAX_MODEL_CALLS):
            if tool_calls_left is not None and tool_calls_left <= 0:
                options = dataclasses.replace(options, tool_choice="none")
            answer = await self._model_call(route, count, history + out.items, data, options,
                                            usage, attached, out, offered, builtins, number)
            cut = answer.acc.finish_reason in ("length", "content_filter")
            if not cut:
                _check_names(answer.acc, offered)
            self._close_message(stored, out, builtins, steps)
            for draft in answer.acc.calls:
                index = answer.functions.get(id(draft))
                if index is not None:
                    out.close_function(index, "incomplete" if cut else "completed")
            if cut:
                reason = "max_output_tokens" if answer.acc.finish_reason == "length" \
                    else "content_filter"
                return await self._end(stored, out, INCOMPLETE, usage=usage,
                                       incomplete_details={"reason": reason})
            wanted = [d for d in answer.acc.calls if d.name in builtins]
            for draft in wanted:
                if tool_calls_left is not None:
                    if tool_calls_left <= 0:
                        continue  # (OpenAI: further calls are ignored)
                    tool_calls_left -= 1
                steps.append(await self._run_tool(stored, out, builtins[draft.name], draft))
            if not wanted or answer.functions:  # (functions: the client's turn)
                return await self._end(stored, out, COMPLETED, usage=usage)
        raise RunFailure("server_error", f"The model called built-in tools more than "
                                         f"{MAX_MODEL_CALLS} times in a row.")

    async def _model_call(self, route: Route, count: Count, items: list[dict[str, Any]],
                          data: dict[str, Any], options: TurnOptions, usage: dict[str, int],
                          attached: Attachments, out: ResponseOutput, offered: set[str],
                          builtins: dict[str, _Builtin], number: int) -> _Answer:
        chat, prompt_tokens = build_chat(items, data.get("instructions"), self._replay,
                                         attached, count)
        params = chat_request(route.model, chat, options, used=usage["output_tokens"],
                              first=number == 0)
        call = ModelCall(route, params, prompt_tokens, count)
        answer = _Answer()
        started = call.started
        try:
            opened = await call.send()
            first_token = True
            async with aclosing(opened.chunks()) as chunks:
                async for chunk in chunks:
                    if first_token and chunk.get("choices"):
                        first_token = False
                        self.metrics.upstream_seconds.labels("first_token").observe(
                            time.monotonic() - started)
                    for piece in answer.acc.feed(chunk):
                        self._on_piece(out, answer, piece, offered, builtins)
            for piece in answer.acc.close():
                self._on_piece(out, answer, piece, offered, builtins)
        except (UpstreamError, openai.APIError) as err:
            raise failure_from_upstream(err, route.provider) from err
        self.metrics.upstream_seconds.labels("total").observe(time.monotonic() - started)
        got = answer.acc.usage
        if got is None:
            text = answer.acc.text + answer.acc.reasoning + "".join(
                c.name + c.arguments for c in answer.acc.calls)
            got = {"prompt_tokens": prompt_tokens, "completion_tokens": count(text)}
        usage["input_tokens"] += int(got.get("prompt_tokens") or 0)
        usage["output_tokens"] += int(got.get("completion_tokens") or 0)
        return answer

    def _on_piece(self, out: ResponseOutput, answer: _Answer, piece: Any, offered: set[str],
                  builtins: dict[str, _Builtin]) -> None:
        if isinstance(piece, Text):
            out.text(piece.text, piece.logprobs)
        elif isinstance(piece, Reasoning):
            out.reasoning(piece.text)
        elif isinstance(piece, CallNamed):
            draft = piece.call
            if draft.name in offered and draft.name not in builtins:
                index = out.open_function(answer.call_id(draft), draft.name)
                answer.functions[id(draft)] = index
                if draft.arguments:
                    out.function_arguments(index, draft.arguments)
        elif isinstance(piece, CallPiece):
            placed = answer.functions.get(id(piece.call))
            if placed is not None and piece.arguments:
                out.function_arguments(placed, piece.arguments)
        elif not isinstance(piece, CallOpened):
            raise TypeError(f"unknown piece {piece!r}")

    def _close_message(self, stored: Stored, out: ResponseOutput,
                       builtins: dict[str, _Builtin], steps: list[dict[str, Any]]) -> None:
        """Close the open message with the citations its text makes of the built-in calls
        before it."""
        if not out.message_open:
            return
        text = out.open_text
        notes: list[dict[str, Any]] = []
        for builtin in builtins.values():
            mine = [s for s in steps if s["type"] == builtin.tool.type]
            if mine:
                notes += _annotations(builtin.tool.message_additions(text, mine).annotations,
                                      _container(stored.data, builtin.entry))
        steps.clear()
        out.close_message("completed", sorted(notes, key=lambda n: n.get("index", 0)))

    async def _run_tool(self, stored: Stored, out: ResponseOutput, builtin: _Builtin,
                        draft: CallDraft) -> dict[str, Any]:
        """Run a built-in tool's call, streamed as its item; returns the step call the tool
        recorded (for the citations of the message after it)."""
        kind = tool_items.ITEM_TYPES[builtin.tool.type]
        item_id = ids.new_id("fs_" if kind == "file_search_call" else "ci_")
        container = _container(stored.data, builtin.entry)
        first = builtin.tool.initial_call(item_id, draft.arguments)
        if kind == "code_interpreter_call":
            item = {"id": item_id, "type": kind, "status": "in_progress",
                    "code": first["code_interpreter"]["input"], "container_id": container,
                    "outputs": None}
        else:
            item = {"id": item_id, "type": kind, "status": "in_progress", "queries": [],
                    "results": None}
        index = out.open_tool(item)
        ctx = self._tool_context(stored, builtin, container)
        started = time.monotonic()
        result: ToolResult = await builtin.tool.call(ctx, item_id, draft.arguments)
        self.metrics.tool_seconds.labels(builtin.tool.type).observe(time.monotonic() - started)
        out.close_tool(index, tool_items.call_item(result.call, result.extra, container,
                                                   _image_url))
        return result.call

    def _tool_context(self, stored: Stored, builtin: _Builtin, container: str) -> ToolContext:
        entry, project = builtin.entry, stored.project

        async def stores() -> list[str]:
            return await self.retrieval.usable_store_ids(project,
                                                         list(entry.get("vector_store_ids")
                                                              or ()))

        async def inputs() -> list[InputFile]:
            """The container's files (it is in use now)."""
            async with self.db.write() as conn:
                found = await self.containers.get(conn, project, container)
                if found is None:
                    return []
                await self.containers.touch(conn, found)
                listed = await self.containers.files_of(conn, container)
            return [InputFile(f["id"], name, functools.partial(self.containers.open, f["id"]))
                    for f in listed if "/" not in (name := f["path"].removeprefix(DATA + "/"))]

        async def keep(relative: str, content: bytes) -> str:
            """A file the code wrote, as a file of the container."""
            async with self.db.read() as conn:
                found = await self.containers.get(conn, project, container)
            if found is None:  # (deleted meanwhile: a file object then)
                return str((await self.files.create_from_bytes(
                    project, relative.rsplit("/", 1)[-1], "assistants_output", content))["id"])
            kept = await self.containers.keep(project, found, f"{DATA}/{relative}", content,
                                              "assistant", None)
            return str(kept["id"])

        # (an auto container's file_ids were made files of the container with the response)
        return ToolContext(project=project, session=container, db=self.db, files=self.files,
                           settings=self.providers.settings, options=entry,
                           store_ids=stores, input_files=inputs,
                           keep_written=keep)

    async def _end(self, stored: Stored, out: ResponseOutput, status: str, *,
                   usage: dict[str, int] | None = None, error: dict[str, Any] | None = None,
                   incomplete_details: dict[str, Any] | None = None) -> str:
        out.close_all("incomplete" if status != COMPLETED else "completed")
        data = stored.data
        data.update(error=error, incomplete_details=incomplete_details,
                    completed_at=ids.now() if status == COMPLETED else None)
        if usage is not None:
            data["usage"] = {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"]}
        if not await self.records.finish(stored, status, out.items):
            return CANCELLED
        out.emit(TERMINAL_EVENTS[status], response=public(data))
        return status


def _check_names(acc: Accumulator, offered: set[str]) -> None:
    for call in acc.calls:
        if call.name not in offered:
            listed = ", ".join(f"'{name}'" for name in sorted(offered)) or "none"
            raise RunFailure("server_error", f"The model called a tool the response does "
                                             f"not offer: '{call.name[:200]}' (offered: "
                                             f"{listed}).")


def _annotations(found: list[dict[str, Any]], container_id: str) -> list[dict[str, Any]]:
    """Annotations of a run's message as output_text annotations: a link to a file the code
    wrote in the container is a ``container_file_citation``."""
    notes = []
    for note in found:
        if note["type"] == "file_citation":
            match = citations.MARKER.fullmatch(note.get("text") or "")
            notes.append({"type": "file_citation", "file_id": note["file_citation"]["file_id"],
                          "filename": match[3] if match else "", "index": note["start_index"]})
        elif note["type"] == "file_path" and note["file_path"]["file_id"].startswith("cfile_"):
            notes.append({"type": "container_file_citation", "container_id": container_id,
                          "file_id": note["file_path"]["file_id"],
                          "filename": note["text"].rsplit("/", 1)[-1],
                          "start_index": note["start_index"], "end_index": note["end_index"]})
        elif note["type"] == "file_path":
            notes.append({"type": "file_path", "file_id": note["file_path"]["file_id"],
                          "index": note["start_index"]})
    return notes


def _container(data: dict[str, Any], entry: dict[str, Any]) -> str:
    """The container a code interpreter call runs in: the tool's, or the one chosen for
    the response when its tool asked for ``auto``."""
    spec = entry.get("container")
    return spec if isinstance(spec, str) else str(data.get("_container") or data["id"])


def _image_url(file_id: str) -> str:
    return f"/v1/files/{file_id}/content"

