"""Reading runs, their steps and their stored stream of events; and a run's metadata."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from vtai.server import ids
from vtai.server.errors import bad_request, not_found
from vtai.server.protocol.lists import ListParams
from vtai.server.protocol.runs import FILE_SEARCH_CONTENT, RunModify
from vtai.server.runs import states
from vtai.server.runs.events import Event, EventBus, Subscription
from vtai.server.store import objects, queries, tables
from vtai.server.store.db import Database
from vtai.server.store.objects import Page
from vtai.server.store.sql import Connection


def check_include(include: list[str] | None) -> bool:
    """Whether ``include[]`` asks for file_search results' content (400 for another value)."""
    for value in include or []:
        if value != FILE_SEARCH_CONTENT:
            raise bad_request(f"Invalid value for 'include[]': '{value}'. Supported values are: "
                              f"'{FILE_SEARCH_CONTENT}'.", "include[]")
    return bool(include)


def without_result_content(step: str) -> str:
    """A run step's JSON (or a step delta's) without the text of its file_search results, as
    OpenAI returns steps unless ``include[]`` asks for
    ``step_details.tool_calls[*].file_search.results[*].content``. Steps keep the text:
    the model reads it again on later turns."""
    if '"file_search"' not in step:
        return step
    obj = orjson.loads(step)
    details = obj.get("step_details") or (obj.get("delta") or {}).get("step_details") or {}
    for call in details.get("tool_calls") or []:
        for result in (call.get("file_search") or {}).get("results") or []:
            result.pop("content", None)
    return orjson.dumps(obj).decode()


def event_without_result_content(event: Event) -> Event:
    """A streamed event as ``without_result_content`` shows its step."""
    if not event.event.startswith("thread.run.step."):
        return event
    return dataclasses.replace(event, data=without_result_content(event.data))


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


async def load_run(db: Database, project: str, thread_id: str, run_id: str
                   ) -> dict[str, Any]:
    r = tables.runs
    async with db.read() as conn:
        run = await objects.get_object(conn, r, run_id, project, r.c.thread_id == thread_id)
        if run is None:
            await _missing(conn, project, thread_id)
            raise not_found("run", run_id)
    return run


@dataclasses.dataclass
class Resumed:
    """A run's stream from a point: the events after it, and what comes next (``live``:
    the stream goes on until the run finishes or pauses)."""

    missed: list[Event]
    subscription: Subscription
    live: bool


class RunReads:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus

    async def list(self, project: str, thread_id: str, page: ListParams) -> Page:
        r = tables.runs
        async with self.db.read() as conn:
            result = await objects.list_page(
                conn, r, [r.c.thread_id == thread_id, r.c.project_id == project],
                limit=page.limit, order=page.order, after=page.after, before=page.before)
            if not result.rows and not await queries.thread_exists(conn, thread_id, project):
                raise not_found("thread", thread_id)
        return result

    async def retrieve(self, project: str, thread_id: str, run_id: str) -> dict[str, Any]:
        return await load_run(self.db, project, thread_id, run_id)

    async def modify(self, project: str, thread_id: str, run_id: str, body: RunModify) -> str:
        r = tables.runs
        async with self.db.write() as conn:
            run = await objects.get_object(conn, r, run_id, project,
                                           r.c.thread_id == thread_id)
            if run is None:
                await _missing(conn, project, thread_id)
                raise not_found("run", run_id)
            if "metadata" in body.model_fields_set:
                run["metadata"] = body.metadata or {}
            return await objects.save_object(conn, r, run)

    async def list_steps(self, project: str, thread_id: str, run_id: str, page: ListParams,
                         with_content: bool) -> Page:
        await load_run(self.db, project, thread_id, run_id)
        s = tables.run_steps
        async with self.db.read() as conn:
            result = await objects.list_page(
                conn, s, [s.c.run_id == run_id, s.c.project_id == project], limit=page.limit,
                order=page.order, after=page.after, before=page.before)
        if with_content:
            return result
        return dataclasses.replace(result, rows=[without_result_content(r)
                                                 for r in result.rows])

    async def retrieve_step(self, project: str, thread_id: str, run_id: str, step_id: str,
                            with_content: bool) -> str:
        s = tables.run_steps
        async with self.db.read() as conn:
            data = await objects.get_data(conn, s, step_id, project, s.c.run_id == run_id,
                                          s.c.thread_id == thread_id)
            if data is None:
                await _missing(conn, project, thread_id, run_id)
                raise not_found("run step", step_id)
        return data if with_content else without_result_content(data)

    async def resume(self, project: str, thread_id: str, run_id: str, after: str,
                     param: str) -> Resumed:
        """The run's stream after the event id ``after`` ("": from its start), so a client
        that lost its stream resumes with exactly what it missed; ``param``: where the id
        came from, for a 400."""
        if after and not ids.is_event_id(after):
            # (a wrong id would otherwise resume after some other point of the stream)
            raise bad_request(f"Invalid event id {after!r}: use the id of an event of this "
                              "run's stream.", param)
        sub = self.bus.subscribe(run_id, after)  # before the history: nothing falls between
        try:
            run = await load_run(self.db, project, thread_id, run_id)
            missed = await self.bus.history(run_id, after or None)
        except BaseException:
            sub.close()
            raise
        sub.seen.update(event.id for event in missed)
        # Events of another process may have reached the subscription while history was
        # read: each goes out once, in order.
        delivered = sub.take_delivered()
        if delivered:
            missed = sorted({e.id: e for e in [*missed, *delivered]}.values(),
                            key=lambda e: e.id)
        # A paused or finished run whose pausing event the client has already: nothing to
        # wait for.
        live = run["status"] not in states.PAUSING or any(e.ends_stream for e in missed)
        return Resumed(missed, sub, live)
