"""/v1/threads/{thread_id}/runs, /v1/threads/runs, run steps, tool outputs and cancel."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from openai.types.beta.threads import Run
from pydantic import Field
from sqlalchemy import exc as sa_exc
from starlette.responses import Response

from vtai.server import ids
from vtai.server.api.auth import project_id
from vtai.server.api.common import (
    Metadata,
    ReasoningEffort,
    ResponseFormat,
    Strict,
    Temperature,
    ToolResources,
    Tools,
    TopP,
    dump_response_format,
    dump_tools,
)
from vtai.server.api.errors import bad_request, not_found
from vtai.server.api.limits import ActiveRunLimit, check_message_size, check_tools_size
from vtai.server.api.messages import MessageCreate, insert_message, new_message
from vtai.server.api.pagination import ListParams, list_params
from vtai.server.api.references import message_file_ids, require_files
from vtai.server.api.responses import json_response
from vtai.server.api.sse import EventStream
from vtai.server.api.threads import ThreadCreate, check_thread_request, insert_thread
from vtai.server.providers.routing import ProviderMissing
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL, Event, Subscription
from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.records import Conflict, RunRecords
from vtai.server.shapes import shaped
from vtai.server.store import objects, queries, tables, writes
from vtai.server.store.sql import Connection
from vtai.server.tools.file_search.tool import without_result_content

router = APIRouter(tags=["runs"])

POLL_AFTER_MS = "100"
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


class TruncationStrategy(Strict):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(None, ge=1)


class ToolChoiceFunction(Strict):
    name: str


class FunctionToolChoice(Strict):
    type: Literal["function"]
    function: ToolChoiceFunction


class BuiltinToolChoice(Strict):
    type: Literal["code_interpreter", "file_search"]


ToolChoice = Literal["none", "auto", "required"] | Annotated[
    FunctionToolChoice | BuiltinToolChoice, Field(discriminator="type")]


class RunOptions(Strict):
    assistant_id: str
    model: str | None = Field(None, min_length=1, max_length=256)
    instructions: str | None = Field(None, max_length=256_000)
    tools: Tools | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(None, ge=256)
    max_completion_tokens: int | None = Field(None, ge=256)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort = None


class RunCreate(RunOptions):
    additional_instructions: str | None = Field(None, max_length=256_000)
    additional_messages: list[MessageCreate] | None = None


class ThreadAndRunCreate(RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class RunModify(Strict):
    metadata: Metadata = None


class ToolOutput(Strict):
    tool_call_id: str
    output: str = ""


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


def _records(request: Request) -> RunRecords:
    records: RunRecords = request.app.state.records
    return records


def _poll_headers(response: Response) -> Response:
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


async def _assistant_for_run(request: Request, project: str, body: RunOptions,
                             thread_id: str | None = None, thread_rows: bool = False
                             ) -> tuple[dict[str, Any], queries.RunStart]:
    """The run's assistant, after checking that a provider serves the run's model and that
    the project may start another run; and what was read with it about the run's thread
    (with its messages and steps if ``thread_rows``). (The handlers check the size of the
    body's tools first.)"""
    active_runs: ActiveRunLimit = request.app.state.active_runs
    count = active_runs.to_count(project)
    async with request.app.state.db.read() as conn:
        start = await queries.run_start(conn, body.assistant_id, project, thread_id, count,
                                        thread_rows)
    if start.assistant is None:
        raise not_found("assistant", body.assistant_id)
    active_runs.check(project, start.active_in_project if count else None)
    assistant = orjson.loads(start.assistant)
    model = body.model or assistant["model"]
    try:
        await request.app.state.providers.route(model)
    except ProviderMissing as err:
        raise bad_request(str(err), "model", "model_not_found") from err
    return assistant, start


def _new_run(request: Request, assistant: dict[str, Any], thread_id: str, body: RunOptions,
             additional_instructions: str | None = None) -> dict[str, Any]:
    model = body.model or assistant["model"]
    instructions = body.instructions if body.instructions is not None \
        else assistant.get("instructions")
    if additional_instructions:
        instructions = f"{instructions}\n\n{additional_instructions}" if instructions \
            else additional_instructions
    fields = body.model_fields_set
    created = ids.now()

    def pick(name: str, default: Any) -> Any:
        value = getattr(body, name)
        return value if name in fields and value is not None else default

    return _check_tool_choice(shaped(Run, {
        "id": ids.new_id("run_"), "object": "thread.run", "created_at": created,
        "thread_id": thread_id, "assistant_id": assistant["id"], "status": states.QUEUED,
        "required_action": None, "last_error": None,
        "expires_at": created + request.app.state.settings.run_expires_after,
        "started_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "incomplete_details": None, "model": model, "instructions": instructions or "",
        "tools": dump_tools(body.tools) if body.tools is not None else assistant["tools"],
        "metadata": body.metadata or {}, "usage": None,
        "temperature": pick("temperature", assistant.get("temperature")),
        "top_p": pick("top_p", assistant.get("top_p")),
        "max_prompt_tokens": body.max_prompt_tokens,
        "max_completion_tokens": body.max_completion_tokens,
        "truncation_strategy": body.truncation_strategy.model_dump()
        if body.truncation_strategy else {"type": "auto", "last_messages": None},
        "response_format": dump_response_format(body.response_format)
        if body.response_format is not None else assistant.get("response_format", "auto"),
        "tool_choice": (body.tool_choice.model_dump(exclude_none=True)
                        if isinstance(body.tool_choice, FunctionToolChoice | BuiltinToolChoice)
                        else body.tool_choice) or "auto",
        "parallel_tool_calls": True if body.parallel_tool_calls is None
        else body.parallel_tool_calls,
        "reasoning_effort": pick("reasoning_effort", assistant.get("reasoning_effort")),
    }))


def _check_tool_choice(run: dict[str, Any]) -> dict[str, Any]:
    """A tool_choice that names a tool must name one of the run's tools (400 otherwise)."""
    choice, tools = run["tool_choice"], run["tools"] or []
    if not isinstance(choice, dict):
        return run
    if choice["type"] == "function":
        name = choice["function"]["name"]
        if not any(t["type"] == "function" and t["function"]["name"] == name for t in tools):
            raise bad_request(f"Invalid value for 'tool_choice': the function '{name}' is not "
                              "one of the run's tools.", "tool_choice.function.name",
                              "invalid_value")
    elif not any(t["type"] == choice["type"] for t in tools):
        raise bad_request(f"Invalid value for 'tool_choice': the run has no "
                          f"{choice['type']} tool.", "tool_choice.type", "invalid_value")
    return run


@dataclasses.dataclass
class _NewRun:
    run: dict[str, Any]
    data: str  # its JSON as stored
    project: str
    adopted: bool  # claimed by this process's worker as it was created
    events: list[Event]  # its creation events (_creation_events)


async def _store_run(request: Request, run: dict[str, Any], project: str,
                     conn: Connection | None = None, thread_data: str | None = None
                     ) -> _NewRun:
    """Store a new run on its thread, which must be in the project (404) and have no active
    run (400): in ``conn``'s transaction if given (a write in the thread's turn), else in one
    durable write of its own in the thread's turn. ``thread_data``: the thread, if the run
    creates it (its event comes first)."""
    thread_id = run["thread_id"]
    db = request.app.state.db
    lease = request.app.state.worker.lease_for_new_run()
    data = objects.dumps(run)
    row = {"id": run["id"], "project_id": project, "created_at": run["created_at"],
           "data": data, "thread_id": thread_id, "status": run["status"],
           **(lease or {"worker_id": None, "lease_expires_at": None})}
    notify = None if lease else WORK_CHANNEL  # another process's worker will execute it
    events = _creation_events(data, thread_data)
    try:
        if conn is None:
            stored = await writes.insert_run(db, row, notify)
        else:
            stored = await writes.insert_run_in(conn, row)
            if stored and notify:
                await db.notify(conn, notify)
    except sa_exc.IntegrityError as err:  # a run started on the thread at the same moment
        raise bad_request(f"Thread {thread_id} already has an active run.") from err
    if not stored:
        if conn is None:
            async with db.read() as read:
                exists, active = await queries.thread_activity(read, thread_id, project)
        else:
            exists, active = await queries.thread_activity(conn, thread_id, project)
        if not exists:
            raise not_found("thread", thread_id)
        raise bad_request(f"Thread {thread_id} already has an active run"
                          + (f" {active}." if active else "."))
    return _NewRun(run, data, project, lease is not None, events)


def _without_result_content(event: Event) -> Event:
    if not event.event.startswith("thread.run.step."):
        return event
    return dataclasses.replace(event, data=without_result_content(event.data))


def _stream(request: Request, sub: Subscription, first: list[Event], live: bool = True,
            include: list[str] | None = None) -> EventStream:
    """An SSE response; step events lose their file_search results' content unless
    ``include[]`` asks for it, as when steps are retrieved."""
    rewrite = None if FILE_SEARCH_CONTENT in (include or []) else _without_result_content
    return EventStream(first, sub, live, rewrite)


def _creation_events(run_data: str, thread_data: str | None = None) -> list[Event]:
    """Stamped before the run commits, so they come first in the stored stream."""
    events = [Event.stamped("thread.created", thread_data)] if thread_data else []
    return [*events, Event.stamped("thread.run.created", run_data),
            Event.stamped("thread.run.queued", run_data)]


def _started(request: Request, new: _NewRun, sub: Subscription | None,
             include: list[str] | None = None,
             ahead: ModelCall | None = None) -> Response:
    """Announce a new run (its events are stored for resuming streams) and start it;
    ``ahead``: its first model call, sent already."""
    bus = _records(request).bus
    for event in new.events:
        bus.publish(new.run["id"], event)
    _execute(request, new.run, new.project, new.adopted, ahead)
    if sub is None:
        return _poll_headers(json_response(new.data))
    return _stream(request, sub, [], include=include)


def _execute(request: Request, run: dict[str, Any], project: str, adopted: bool,
             ahead: ModelCall | None = None) -> None:
    if adopted:
        request.app.state.worker.adopt(run, project, ahead)
        return
    if ahead is not None:  # another process will execute the run
        ahead.release()
    request.app.state.worker.wake()


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: RunCreate, request: Request, project: str = Depends(project_id),
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    _check_include(include)
    for index, extra in enumerate(body.additional_messages or []):
        check_message_size(extra.content, extra.attachments, request.app.state.settings,
                           f"additional_messages[{index}].content")
    check_tools_size(body.tools, request.app.state.settings)  # (before anything is sent)
    # The model starts on the thread while the run is stored, when the thread holds the
    # whole prompt already and this process's worker will execute the run. (A message
    # another request adds to the thread in between is stored before the run but is not in
    # this first prompt.)
    ahead_possible = not body.additional_messages and request.app.state.worker.has_room()
    assistant, start = await _assistant_for_run(request, project, body, thread_id,
                                                thread_rows=ahead_possible)
    if not start.thread_exists:
        raise not_found("thread", thread_id)
    run, ahead = _new_run(request, assistant, thread_id, body, body.additional_instructions), None
    if start.thread_active_run is None and start.thread_rows is not None:
        ahead = await request.app.state.worker.send_ahead(run, start.thread_rows)
    sub = _records(request).bus.subscribe(run["id"]) if body.stream else None
    try:
        if body.additional_messages:
            # One run (or message) at a time checks the thread's active run and writes.
            async with request.app.state.db.write(turn=writes.thread_turn(thread_id)) as conn:
                await require_files(conn, project, [f for extra in body.additional_messages
                                                    for f in message_file_ids(extra)])
                for extra in body.additional_messages:
                    await insert_message(conn, new_message(thread_id, extra), project)
                new = await _store_run(request, run, project, conn)
        else:
            new = await _store_run(request, run, project)
    except BaseException:
        if sub is not None:
            sub.close()
        if ahead is not None:
            ahead.release()
        raise
    return _started(request, new, sub, include, ahead)


@router.post("/threads/runs")
async def create_thread_and_run(
    body: ThreadAndRunCreate, request: Request, project: str = Depends(project_id),
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    """``include[]`` is an extension here (OpenAI takes it on run create only): it keeps the
    file_search results' content in the streamed step events."""
    _check_include(include)
    thread = body.thread or ThreadCreate()
    check_thread_request(thread, request.app.state.settings)
    if body.tool_resources is not None:  # the run's resources, kept on its new thread
        given = {name: value for name in ("code_interpreter", "file_search")
                 if (value := getattr(body.tool_resources, name)) is not None}
        merged = (thread.tool_resources or ToolResources()).model_copy(update=given)
        thread = thread.model_copy(update={"tool_resources": merged})
    check_tools_size(body.tools, request.app.state.settings)
    assistant, _ = await _assistant_for_run(request, project, body)
    async with request.app.state.db.write() as conn:
        thread_data = await insert_thread(conn, thread, project)
        thread_id = orjson.loads(thread_data)["id"]
        run = _new_run(request, assistant, thread_id, body)
        sub = _records(request).bus.subscribe(run["id"]) if body.stream else None
        try:
            new = await _store_run(request, run, project, conn, thread_data)
        except BaseException:
            if sub is not None:
                sub.close()
            raise
    return _started(request, new, sub, include)


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str, request: Request, page: ListParams = Depends(list_params),
    project: str = Depends(project_id),
) -> Response:
    r = tables.runs
    async with request.app.state.db.read() as conn:
        result = await objects.list_page(
            conn, r, [r.c.thread_id == thread_id, r.c.project_id == project], limit=page.limit,
            order=page.order, after=page.after, before=page.before)
        if not result.rows and not await queries.thread_exists(conn, thread_id, project):
            raise not_found("thread", thread_id)
    return json_response(result.to_json())


async def _load_run(request: Request, thread_id: str, run_id: str, project: str
                    ) -> dict[str, Any]:
    r = tables.runs
    async with request.app.state.db.read() as conn:
        run = await objects.get_object(conn, r, run_id, project, r.c.thread_id == thread_id)
        if run is None:
            await _missing(conn, project, thread_id)
            raise not_found("run", run_id)
    return run


async def _missing(conn: Connection, project: str, thread_id: str,
                   run_id: str | None = None) -> None:
    """For an object not found under /threads/{thread_id}/runs/{run_id}: 404 for the thread
    if it is not there, else for the run (if ``run_id``) if it is not on that thread."""
    if not await queries.thread_exists(conn, thread_id, project):
        raise not_found("thread", thread_id)
    r = tables.runs
    if run_id is not None and await objects.get_data(conn, r, run_id, project,
                                                     r.c.thread_id == thread_id) is None:
        raise not_found("run", run_id)


@router.get("/threads/{thread_id}/runs/{run_id}")
async def retrieve_run(
    thread_id: str, run_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    return _poll_headers(json_response(await _load_run(request, thread_id, run_id, project)))


@router.post("/threads/{thread_id}/runs/{run_id}")
async def modify_run(
    thread_id: str, run_id: str, body: RunModify, request: Request,
    project: str = Depends(project_id),
) -> Response:
    r = tables.runs
    async with request.app.state.db.write() as conn:
        run = await objects.get_object(conn, r, run_id, project, r.c.thread_id == thread_id)
        if run is None:
            await _missing(conn, project, thread_id)
            raise not_found("run", run_id)
        if "metadata" in body.model_fields_set:
            run["metadata"] = body.metadata or {}
        data = await objects.save_object(conn, r, run)
    return json_response(data)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str, run_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    records = _records(request)
    for _ in range(5):
        run = await _load_run(request, thread_id, run_id, project)
        if run["status"] == states.CANCELLING:
            return _poll_headers(json_response(run))
        if not states.can_move(run["status"], states.CANCELLING):
            raise bad_request(f"Cannot cancel run with status '{run['status']}'.")
        try:
            run = await records.move(run, states.CANCELLING)
        except Conflict:
            continue  # the executor moved it meanwhile; look again
        if not request.app.state.worker.interrupt(run_id):
            request.app.state.worker.wake()
        return _poll_headers(json_response(run))
    raise bad_request("The run is changing too fast to cancel; try again.")


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, request: Request,
    project: str = Depends(project_id),
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    """``include[]``: as on create_thread_and_run, an extension for the streamed steps."""
    _check_include(include)
    records = _records(request)
    run = await _load_run(request, thread_id, run_id, project)
    if run["status"] != states.REQUIRES_ACTION:
        raise bad_request(
            f"Runs in status \"{run['status']}\" do not accept tool outputs.", "run_id")
    pending = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    given = [o.tool_call_id for o in body.tool_outputs]
    for index, call_id in enumerate(given):
        if call_id not in pending:
            raise bad_request(f"No tool call found with id '{call_id}' in the pending tool "
                              "calls of this run.", f"tool_outputs[{index}].tool_call_id")
        if given.count(call_id) > 1:
            raise bad_request(f"Tool output for '{call_id}' was given more than once.",
                              f"tool_outputs[{index}].tool_call_id")
    missing = [c for c in pending if c not in given]
    if missing:
        raise bad_request(f"Expected tool outputs for call ids {pending}, got {given}; missing "
                          f"{missing}.", "tool_outputs")

    outputs = {o.tool_call_id: o.output for o in body.tool_outputs}
    sub = records.bus.subscribe(run_id) if body.stream else None
    worker = request.app.state.worker
    try:
        async with records.changes() as tx:
            for step in await tx.run_steps(run_id):
                calls = step["step_details"].get("tool_calls") or []
                if step["status"] != "in_progress" or \
                        not any(c["id"] in outputs for c in calls):
                    continue
                for call in calls:
                    if call["id"] in outputs:
                        call["function"]["output"] = outputs[call["id"]]
                step.update(status="completed", completed_at=ids.now())
                await tx.save_step(step, "completed")
            lease = worker.lease_for_new_run()
            run = await tx.move(run, states.QUEUED, lease=lease, required_action=None)
    except Conflict as err:
        if sub:
            sub.close()
        raise bad_request("The run changed while tool outputs were submitted.") from err
    except Exception:
        if sub:
            sub.close()
        raise
    _execute(request, run, project, lease is not None)
    if sub is None:
        return _poll_headers(json_response(run))
    return _stream(request, sub, [], include=include)


def _check_include(include: list[str] | None) -> None:
    for value in include or []:
        if value != FILE_SEARCH_CONTENT:
            raise bad_request(f"Invalid value for 'include[]': '{value}'. Supported values are: "
                              f"'{FILE_SEARCH_CONTENT}'.", "include[]")


@router.get("/threads/{thread_id}/runs/{run_id}/events", tags=["extensions"])
async def run_events(
    thread_id: str, run_id: str, request: Request, project: str = Depends(project_id),
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    """An extension of the API: the run's stream of events, from after ``Last-Event-ID``
    (or ``after``), so a client that lost its stream resumes with exactly what it missed.
    It ends where a live stream would: when the run finishes or waits for tool outputs."""
    _check_include(include)
    bus = _records(request).bus
    start = last_event_id or after or ""
    if start and not ids.is_event_id(start):
        # (a wrong id would otherwise resume after some other point of the stream)
        raise bad_request(f"Invalid event id {start!r}: use the id of an event of this "
                          "run's stream.", "Last-Event-ID" if last_event_id else "after")
    sub = bus.subscribe(run_id, start)  # before reading history: nothing falls in between
    try:
        run = await _load_run(request, thread_id, run_id, project)
        missed = await bus.history(run_id, start or None)
    except BaseException:
        sub.close()
        raise
    sub.seen.update(event.id for event in missed)
    # Events of another process may have reached the subscription while history was read:
    # each goes out once, in order.
    delivered = sub.take_delivered()
    if delivered:
        missed = sorted({e.id: e for e in [*missed, *delivered]}.values(), key=lambda e: e.id)
    # A paused or finished run whose pausing event the client already has: nothing to wait for.
    live = run["status"] not in states.PAUSING or any(e.ends_stream for e in missed)
    return _stream(request, sub, missed, live=live, include=include)


@router.get("/threads/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(
    thread_id: str, run_id: str, request: Request, page: ListParams = Depends(list_params),
    project: str = Depends(project_id),
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    _check_include(include)
    await _load_run(request, thread_id, run_id, project)
    s = tables.run_steps
    async with request.app.state.db.read() as conn:
        result = await objects.list_page(
            conn, s, [s.c.run_id == run_id, s.c.project_id == project], limit=page.limit,
            order=page.order, after=page.after, before=page.before)
    if FILE_SEARCH_CONTENT not in (include or []):
        result = dataclasses.replace(result, rows=[without_result_content(r)
                                                   for r in result.rows])
    return json_response(result.to_json())


@router.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_run_step(
    thread_id: str, run_id: str, step_id: str, request: Request,
    project: str = Depends(project_id),
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> Response:
    _check_include(include)
    s = tables.run_steps
    async with request.app.state.db.read() as conn:
        data = await objects.get_data(conn, s, step_id, project, s.c.run_id == run_id,
                                      s.c.thread_id == thread_id)
        if data is None:
            await _missing(conn, project, thread_id, run_id)
            raise not_found("run step", step_id)
    if FILE_SEARCH_CONTENT not in (include or []):
        data = without_result_content(data)
    return json_response(data)
