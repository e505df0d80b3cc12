"""/v1/threads/{thread_id}/runs, /v1/threads/runs, run steps, tool outputs, cancel, and the
run's resumable stream of events (an extension)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc, WithContent
from vtai.server.api.json import json_response
from vtai.server.api.sse import EventStream
from vtai.server.protocol.runs import RunCreate, RunModify, SubmitToolOutputs, ThreadAndRunCreate
from vtai.server.runs.events import Event, Subscription
from vtai.server.services.run_reads import event_without_result_content
from vtai.server.services.runs import Started

router = APIRouter(tags=["runs"])

POLL_AFTER_MS = "100"


def _polled(body: str | bytes | dict[str, Any]) -> Response:
    response = json_response(body)
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return response


def _stream(sub: Subscription, first: list[Event], with_content: bool,
            live: bool = True) -> EventStream:
    """An SSE response; step events lose their file_search results' content unless
    ``include[]`` asks for it, as when steps are retrieved."""
    return EventStream(first, sub, live,
                       None if with_content else event_without_result_content)


def _answer(started: Started, with_content: bool) -> Response:
    if started.stream is None:
        return _polled(started.data)
    return _stream(started.stream, [], with_content)


@router.post("/threads/{thread_id}/runs")
async def create_run(thread_id: str, body: RunCreate, svc: Svc, project: Project,
                     with_content: WithContent) -> Response:
    return _answer(await svc.runs.create(project, thread_id, body), with_content)


@router.post("/threads/runs")
async def create_thread_and_run(body: ThreadAndRunCreate, svc: Svc, project: Project,
                                with_content: WithContent) -> Response:
    """``include[]`` is an extension here (OpenAI takes it on run create only): it keeps the
    file_search results' content in the streamed step events."""
    return _answer(await svc.runs.create_thread_and_run(project, body), with_content)


@router.get("/threads/{thread_id}/runs")
async def list_runs(thread_id: str, svc: Svc, project: Project, page: Page) -> Response:
    return json_response((await svc.run_reads.list(project, thread_id, page)).to_json())


@router.get("/threads/{thread_id}/runs/{run_id}")
async def retrieve_run(thread_id: str, run_id: str, svc: Svc, project: Project) -> Response:
    return _polled(await svc.run_reads.retrieve(project, thread_id, run_id))


@router.post("/threads/{thread_id}/runs/{run_id}")
async def modify_run(thread_id: str, run_id: str, body: RunModify, svc: Svc,
                     project: Project) -> Response:
    return json_response(await svc.run_reads.modify(project, thread_id, run_id, body))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, svc: Svc, project: Project) -> Response:
    return _polled(await svc.runs.cancel(project, thread_id, run_id))


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(thread_id: str, run_id: str, body: SubmitToolOutputs, svc: Svc,
                              project: Project, with_content: WithContent) -> Response:
    """``include[]``: as on create_thread_and_run, an extension for the streamed steps."""
    started = await svc.runs.submit_tool_outputs(project, thread_id, run_id, body)
    return _answer(started, with_content)


@router.get("/threads/{thread_id}/runs/{run_id}/events", tags=["extensions"])
async def run_events(
    thread_id: str, run_id: str, svc: Svc, project: Project, with_content: WithContent,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """An extension of the API: the run's stream of events, from after ``Last-Event-ID``
    (or ``after``), so a client that lost its stream resumes with exactly what it missed.
    It ends where a live stream would: when the run finishes or waits for tool outputs."""
    resumed = await svc.run_reads.resume(project, thread_id, run_id,
                                         last_event_id or after or "",
                                         "Last-Event-ID" if last_event_id else "after")
    return _stream(resumed.subscription, resumed.missed, with_content, resumed.live)


@router.get("/threads/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(thread_id: str, run_id: str, svc: Svc, project: Project, page: Page,
                         with_content: WithContent) -> Response:
    steps = await svc.run_reads.list_steps(project, thread_id, run_id, page, with_content)
    return json_response(steps.to_json())


@router.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_run_step(thread_id: str, run_id: str, step_id: str, svc: Svc,
                            project: Project, with_content: WithContent) -> Response:
    return json_response(await svc.run_reads.retrieve_step(project, thread_id, run_id,
                                                           step_id, with_content))
