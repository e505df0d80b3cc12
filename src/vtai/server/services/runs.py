"""Starting runs (on a thread, or with a new thread), tool outputs, cancel: what makes a run
move from outside the engine. A run is stored queued with its creation events, then handed to
this process's worker when it has room (claimed as it is stored), or left to any worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from openai.types.beta.threads import Run
from sqlalchemy import exc as sa_exc

from vtai.server import ids
from vtai.server.errors import bad_request, not_found
from vtai.server.protocol.common import dump_response_format, dump_tools
from vtai.server.protocol.messages import message_file_ids
from vtai.server.protocol.resources import ToolResources
from vtai.server.protocol.runs import (
    BuiltinToolChoice,
    FunctionToolChoice,
    RunCreate,
    RunOptions,
    SubmitToolOutputs,
    ThreadAndRunCreate,
)
from vtai.server.protocol.threads import ThreadCreate
from vtai.server.providers.routing import ProviderMissing, Providers
from vtai.server.runs import states
from vtai.server.runs.events import WORK_CHANNEL, Event, Subscription
from vtai.server.runs.model_call import ModelCall
from vtai.server.runs.records import Conflict, RunRecords
from vtai.server.runs.worker import Worker
from vtai.server.services.checks import ActiveRunLimit, check_message_size, check_tools_size
from vtai.server.services.messages import insert_message, new_message
from vtai.server.services.references import require_files
from vtai.server.services.run_reads import load_run
from vtai.server.services.threads import check_thread_request, insert_thread
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import objects, queries, writes
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection


@dataclass
class Started:
    """A run stored (and announced): its JSON, and its events if they were asked for."""

    data: str
    stream: Subscription | None


@dataclass
class _NewRun:
    run: dict[str, Any]
    data: str  # its JSON as stored
    project: str
    adopted: bool  # claimed by this process's worker as it was created
    events: list[Event]  # its creation events (_creation_events)


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


def new_run(assistant: dict[str, Any], thread_id: str, body: RunOptions, expires_after: int,
            additional_instructions: str | None = None) -> dict[str, Any]:
    """A queued run of ``assistant`` on the thread, with the request's overrides."""
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
        "required_action": None, "last_error": None, "expires_at": created + expires_after,
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


def _creation_events(run_data: str, thread_data: str | None = None) -> list[Event]:
    """Stamped before the run commits, so they come first in the stored stream."""
    events = [Event.stamped("thread.created", thread_data)] if thread_data else []
    return [*events, Event.stamped("thread.run.created", run_data),
            Event.stamped("thread.run.queued", run_data)]


def _with_run_resources(thread: ThreadCreate, resources: ToolResources | None
                        ) -> ThreadCreate:
    """The run's tool_resources, kept on its new thread."""
    if resources is None:
        return thread
    given = {name: value for name in ("code_interpreter", "file_search")
             if (value := getattr(resources, name)) is not None}
    merged = (thread.tool_resources or ToolResources()).model_copy(update=given)
    return thread.model_copy(update={"tool_resources": merged})


class Runs:
    def __init__(self, db: Database, settings: Settings, records: RunRecords, worker: Worker,
                 providers: Providers) -> None:
        self.db = db
        self.settings = settings
        self.records = records
        self.worker = worker
        self.providers = providers
        self.active_runs = ActiveRunLimit(settings.max_active_runs_per_project)

    async def create(self, project: str, thread_id: str, body: RunCreate) -> Started:
        for index, extra in enumerate(body.additional_messages or []):
            check_message_size(extra.content, extra.attachments, self.settings,
                               f"additional_messages[{index}].content")
        check_tools_size(body.tools, self.settings)  # (before anything is sent)
        # The model starts on the thread while the run is stored, when the thread holds the
        # whole prompt already and this process's worker will execute the run. (A message
        # another request adds to the thread in between is stored before the run but is not
        # in this first prompt.) Only on PostgreSQL: there the run's insert is a round trip
        # the first token no longer waits for; on SQLite, side by side, it did not pay
        # (docs/benchmarks.md).
        ahead_possible = (not self.db.is_sqlite and not body.additional_messages
                          and self.worker.has_room())
        assistant, start = await self._assistant_for_run(project, body, thread_id,
                                                         thread_rows=ahead_possible)
        if not start.thread_exists:
            raise not_found("thread", thread_id)
        run = new_run(assistant, thread_id, body, self.settings.run_expires_after,
                      body.additional_instructions)
        ahead = None
        if start.thread_active_run is None and start.thread_rows is not None:
            ahead = await self.worker.send_ahead(run, start.thread_rows)
        sub = self.records.bus.subscribe(run["id"]) if body.stream else None
        try:
            if body.additional_messages:
                # One run (or message) at a time checks the thread's active run and writes.
                async with self.db.write(turn=writes.thread_turn(thread_id)) as conn:
                    await require_files(conn, project, [
                        f for extra in body.additional_messages for f in message_file_ids(extra)])
                    for extra in body.additional_messages:
                        await insert_message(conn, new_message(thread_id, extra), project)
                    new = await self._store_run(run, project, conn)
            else:
                new = await self._store_run(run, project)
        except BaseException:
            if sub is not None:
                sub.close()
            if ahead is not None:
                ahead.release()
            raise
        return self._started(new, sub, ahead)

    async def create_thread_and_run(self, project: str, body: ThreadAndRunCreate) -> Started:
        thread = _with_run_resources(body.thread or ThreadCreate(), body.tool_resources)
        check_thread_request(thread, self.settings)
        check_tools_size(body.tools, self.settings)
        assistant, _ = await self._assistant_for_run(project, body)
        async with self.db.write() as conn:
            thread_data = await insert_thread(conn, thread, project)
            run = new_run(assistant, orjson.loads(thread_data)["id"], body,
                          self.settings.run_expires_after)
            sub = self.records.bus.subscribe(run["id"]) if body.stream else None
            try:
                new = await self._store_run(run, project, conn, thread_data)
            except BaseException:
                if sub is not None:
                    sub.close()
                raise
        return self._started(new, sub)

    async def submit_tool_outputs(self, project: str, thread_id: str, run_id: str,
                                  body: SubmitToolOutputs) -> Started:
        run = await load_run(self.db, project, thread_id, run_id)
        if run["status"] != states.REQUIRES_ACTION:
            raise bad_request(
                f"Runs in status \"{run['status']}\" do not accept tool outputs.", "run_id")
        outputs = _checked_outputs(run, body)
        sub = self.records.bus.subscribe(run_id) if body.stream else None
        try:
            async with self.records.changes() as tx:
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
                lease = self.worker.lease_for_new_run()
                run = await tx.move(run, states.QUEUED, lease=lease, required_action=None)
        except Conflict as err:
            if sub:
                sub.close()
            raise bad_request("The run changed while tool outputs were submitted.") from err
        except Exception:
            if sub:
                sub.close()
            raise
        self._execute(run, project, lease is not None)
        return Started(objects.dumps(run), sub)

    async def cancel(self, project: str, thread_id: str, run_id: str) -> dict[str, Any]:
        for _ in range(5):
            run = await load_run(self.db, project, thread_id, run_id)
            if run["status"] == states.CANCELLING:
                return run
            if not states.can_move(run["status"], states.CANCELLING):
                raise bad_request(f"Cannot cancel run with status '{run['status']}'.")
            try:
                run = await self.records.move(run, states.CANCELLING)
            except Conflict:
                continue  # the executor moved it meanwhile; look again
            if not self.worker.interrupt(run_id):
                self.worker.wake()
            return run
        raise bad_request("The run is changing too fast to cancel; try again.")

    # ---------------------------------------------------------------------------------------

    async def _assistant_for_run(self, project: str, body: RunOptions,
                                 thread_id: str | None = None, thread_rows: bool = False
                                 ) -> tuple[dict[str, Any], queries.RunStart]:
        """The run's assistant, after checking that a provider serves the run's model and
        that the project may start another run; and what was read with it about the run's
        thread (with its messages and steps if ``thread_rows``)."""
        count = self.active_runs.to_count(project)
        async with self.db.read() as conn:
            start = await queries.run_start(conn, body.assistant_id, project, thread_id,
                                            count, thread_rows)
        if start.assistant is None:
            raise not_found("assistant", body.assistant_id)
        self.active_runs.check(project, start.active_in_project if count else None)
        assistant = orjson.loads(start.assistant)
        try:
            await self.providers.route(body.model or assistant["model"])
        except ProviderMissing as err:
            raise bad_request(str(err), "model", "model_not_found") from err
        return assistant, start

    async def _store_run(self, run: dict[str, Any], project: str,
                         conn: Connection | None = None, thread_data: str | None = None
                         ) -> _NewRun:
        """Store a new run on its thread, which must be in the project (404) and have no
        active run (400): in ``conn``'s transaction if given (a write in the thread's turn),
        else in one durable write of its own in the thread's turn. ``thread_data``: the
        thread, if the run creates it (its event comes first)."""
        thread_id = run["thread_id"]
        lease = self.worker.lease_for_new_run()
        data = objects.dumps(run)
        row = {"id": run["id"], "project_id": project, "created_at": run["created_at"],
               "data": data, "thread_id": thread_id, "status": run["status"],
               **(lease or {"worker_id": None, "lease_expires_at": None})}
        notify = None if lease else WORK_CHANNEL  # another process's worker will execute it
        events = _creation_events(data, thread_data)
        try:
            if conn is None:
                stored = await writes.insert_run(self.db, row, notify)
            else:
                stored = await writes.insert_run_in(conn, row)
                if stored and notify:
                    await self.db.notify(conn, notify)
        except sa_exc.IntegrityError as err:  # a run started on the thread at the same moment
            raise bad_request(f"Thread {thread_id} already has an active run.") from err
        if not stored:
            if conn is None:
                async with self.db.read() as read:
                    exists, active = await queries.thread_activity(read, thread_id, project)
            else:
                exists, active = await queries.thread_activity(conn, thread_id, project)
            if not exists:
                raise not_found("thread", thread_id)
            raise bad_request(f"Thread {thread_id} already has an active run"
                              + (f" {active}." if active else "."))
        return _NewRun(run, data, project, lease is not None, events)

    def _started(self, new: _NewRun, sub: Subscription | None,
                 ahead: ModelCall | None = None) -> Started:
        """Announce a new run (its events are stored for resuming streams) and start it;
        ``ahead``: its first model call, sent already."""
        for event in new.events:
            self.records.bus.publish(new.run["id"], event)
        self._execute(new.run, new.project, new.adopted, ahead)
        return Started(new.data, sub)

    def _execute(self, run: dict[str, Any], project: str, adopted: bool,
                 ahead: ModelCall | None = None) -> None:
        if adopted:
            self.worker.adopt(run, project, ahead)
            return
        if ahead is not None:  # another process will execute the run
            ahead.release()
        self.worker.wake()


def _checked_outputs(run: dict[str, Any], body: SubmitToolOutputs) -> dict[str, str]:
    """The outputs by call id: one for each pending call, and none else (400 otherwise)."""
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
    return {o.tool_call_id: o.output for o in body.tool_outputs}
