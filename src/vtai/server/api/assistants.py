"""/v1/assistants"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from openai.types.beta import Assistant
from pydantic import Field
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
    dump_tool_resources,
    dump_tools,
)
from vtai.server.api.errors import not_found
from vtai.server.api.limits import check_tools_size
from vtai.server.api.pagination import ListParams, list_params
from vtai.server.api.references import require_files, resource_file_ids
from vtai.server.api.responses import deleted, json_response
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.db import Connection

router = APIRouter(tags=["assistants"])


class AssistantFields(Strict):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=256_000)
    tools: Tools = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort = None

    async def changes(self, conn: Connection, project: str) -> dict[str, Any]:
        """The fields the request set, in the object's wire form (inline vector stores are
        created in ``conn``'s transaction)."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "tools":
                value = dump_tools(value)
            elif name == "tool_resources":
                value = await dump_tool_resources(value, conn, project)
            elif name == "response_format":
                value = dump_response_format(value)
            elif name == "metadata":
                value = value or {}
            elif name in ("temperature", "top_p") and value is None:
                value = 1.0
            out[name] = value
        return out


class AssistantCreate(AssistantFields):
    model: str = Field(min_length=1, max_length=256)


class AssistantModify(AssistantFields):
    model: str | None = Field(None, min_length=1, max_length=256)


@router.post("/assistants")
async def create_assistant(
    body: AssistantCreate, request: Request, project: str = Depends(project_id)
) -> Response:
    obj: dict[str, Any] = {
        "id": ids.new_id("asst_"), "object": "assistant", "created_at": ids.now(),
        "name": None, "description": None, "model": body.model, "instructions": None,
        "tools": [], "tool_resources": {}, "metadata": {}, "top_p": 1.0, "temperature": 1.0,
        "reasoning_effort": None, "response_format": "auto",
    }
    check_tools_size(body.tools, request.app.state.settings)
    async with request.app.state.db.write() as conn:
        await require_files(conn, project, resource_file_ids(body.tool_resources))
        obj.update(await body.changes(conn, project))
        data = await objects.insert_object(conn, tables.assistants, shaped(Assistant, obj),
                                           project)
    return json_response(data)


@router.get("/assistants")
async def list_assistants(
    request: Request, page: ListParams = Depends(list_params),
    project: str = Depends(project_id),
) -> Response:
    async with request.app.state.db.read() as conn:
        result = await objects.list_page(
            conn, tables.assistants, [tables.assistants.c.project_id == project],
            limit=page.limit, order=page.order, after=page.after, before=page.before,
        )
    return json_response(result.to_json())


@router.get("/assistants/{assistant_id}")
async def retrieve_assistant(
    assistant_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    async with request.app.state.db.read() as conn:
        data = await objects.get_data(conn, tables.assistants, assistant_id, project)
    if data is None:
        raise not_found("assistant", assistant_id)
    return json_response(data)


@router.post("/assistants/{assistant_id}")
async def modify_assistant(
    assistant_id: str, body: AssistantModify, request: Request,
    project: str = Depends(project_id),
) -> Response:
    check_tools_size(body.tools, request.app.state.settings)
    async with request.app.state.db.write() as conn:
        obj = await objects.get_object(conn, tables.assistants, assistant_id, project)
        if obj is None:
            raise not_found("assistant", assistant_id)
        await require_files(conn, project, resource_file_ids(body.tool_resources))
        changes = await body.changes(conn, project)
        if changes.get("model") is None:
            changes.pop("model", None)
        obj = shaped(Assistant, {**obj, **changes})
        data = await objects.save_object(conn, tables.assistants, obj)
    return json_response(data)


@router.delete("/assistants/{assistant_id}")
async def delete_assistant(
    assistant_id: str, request: Request, project: str = Depends(project_id)
) -> Response:
    t = tables.assistants
    async with request.app.state.db.write() as conn:
        count = await objects.delete_objects(conn, t, t.c.id == assistant_id,
                                             t.c.project_id == project)
    if not count:
        raise not_found("assistant", assistant_id)
    return deleted(assistant_id, "assistant.deleted")
