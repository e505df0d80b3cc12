"""/v1/responses: create, retrieve (or stream again), delete, cancel, input items, input
tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from vtai.server.api.deps import Page, Project, Svc
from vtai.server.api.json import deleted, json_response
from vtai.server.api.sse import EventStream
from vtai.server.protocol.responses import Includable, InputTokensRequest, ResponseCreate

router = APIRouter(tags=["responses"])

# ``include`` as the SDK sends it (``include[]=...``), or plain.
IncludeBrackets = Annotated[list[Includable] | None, Query(alias="include[]")]
IncludePlain = Annotated[list[Includable] | None, Query(alias="include")]


def _include(brackets: list[Includable] | None, plain: list[Includable] | None
             ) -> list[str] | None:
    if brackets is None and plain is None:
        return None
    return [*(brackets or ()), *(plain or ())]


@router.post("/responses")
async def create_response(body: ResponseCreate, svc: Svc, project: Project) -> Response:
    created = await svc.responses.create(project, body)
    if body.stream:
        assert created.stream is not None
        return EventStream([], created.stream, done=b"")
    if body.background:
        return json_response(created.data)
    assert created.stream is not None
    return json_response(await svc.responses.finished(created.stream))


@router.post("/responses/input_tokens")
async def count_input_tokens(body: InputTokensRequest, svc: Svc, project: Project) -> Response:
    return json_response(await svc.responses.input_tokens(project, body))


@router.get("/responses/{response_id}")
async def retrieve_response(response_id: str, svc: Svc, project: Project,
                            include_brackets: IncludeBrackets = None,
                            include_plain: IncludePlain = None, stream: bool = False,
                            starting_after: Annotated[int | None, Query(ge=-1)] = None,
                            include_obfuscation: bool | None = None) -> Response:
    if stream:
        resumed = await svc.responses.resume(project, response_id, starting_after)
        return EventStream(resumed.events, resumed.sub, resumed.live, done=b"")
    return json_response(await svc.responses.retrieve(
        project, response_id, _include(include_brackets, include_plain)))


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, svc: Svc, project: Project) -> Response:
    await svc.responses.delete(project, response_id)
    return deleted(response_id, "response")


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.responses.cancel(project, response_id))


@router.get("/responses/{response_id}/input_items")
async def list_input_items(response_id: str, svc: Svc, project: Project, page: Page,
                           include_brackets: IncludeBrackets = None,
                           include_plain: IncludePlain = None) -> Response:
    return json_response(await svc.responses.input_items(project, response_id, page))
