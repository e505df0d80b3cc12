"""/v1/assistants: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from openai.types.beta import Assistant

from vtai.server import ids
from vtai.server.errors import not_found
from vtai.server.protocol.assistants import AssistantCreate, AssistantFields, AssistantModify
from vtai.server.protocol.common import dump_response_format, dump_tools
from vtai.server.protocol.lists import ListParams
from vtai.server.services.checks import check_tools_size
from vtai.server.services.resources import tool_resources
from vtai.server.settings import Settings
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.db import Database
from vtai.server.store.objects import Page
from vtai.server.store.sql import Connection


async def _changes(body: AssistantFields, conn: Connection, project: str) -> dict[str, Any]:
    """The fields the request set, in the object's wire form (inline vector stores are
    created in ``conn``'s transaction)."""
    out: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "tools":
            value = dump_tools(value)
        elif name == "tool_resources":
            value = await tool_resources(value, conn, project)
        elif name == "response_format":
            value = dump_response_format(value)
        elif name == "metadata":
            value = value or {}
        elif name in ("temperature", "top_p") and value is None:
            value = 1.0
        out[name] = value
    return out


class Assistants:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(self, project: str, body: AssistantCreate) -> str:
        obj: dict[str, Any] = {
            "id": ids.new_id("asst_"), "object": "assistant", "created_at": ids.now(),
            "name": None, "description": None, "model": body.model, "instructions": None,
            "tools": [], "tool_resources": {}, "metadata": {}, "top_p": 1.0,
            "temperature": 1.0, "reasoning_effort": None, "response_format": "auto",
        }
        check_tools_size(body.tools, self.settings)
        async with self.db.write() as conn:
            obj.update(await _changes(body, conn, project))
            return await objects.insert_object(conn, tables.assistants,
                                               shaped(Assistant, obj), project)

    async def list(self, project: str, page: ListParams) -> Page:
        a = tables.assistants
        async with self.db.read() as conn:
            return await objects.list_page(conn, a, [a.c.project_id == project],
                                           limit=page.limit, order=page.order,
                                           after=page.after, before=page.before)

    async def retrieve(self, project: str, assistant_id: str) -> str:
        async with self.db.read() as conn:
            data = await objects.get_data(conn, tables.assistants, assistant_id, project)
        if data is None:
            raise not_found("assistant", assistant_id)
        return data

    async def modify(self, project: str, assistant_id: str, body: AssistantModify) -> str:
        check_tools_size(body.tools, self.settings)
        async with self.db.write() as conn:
            obj = await objects.get_object(conn, tables.assistants, assistant_id, project)
            if obj is None:
                raise not_found("assistant", assistant_id)
            changes = await _changes(body, conn, project)
            if changes.get("model") is None:
                changes.pop("model", None)
            return await objects.save_object(conn, tables.assistants,
                                             shaped(Assistant, {**obj, **changes}))

    async def delete(self, project: str, assistant_id: str) -> None:
        a = tables.assistants
        async with self.db.write() as conn:
            count = await objects.delete_objects(conn, a, a.c.id == assistant_id,
                                                 a.c.project_id == project)
        if not count:
            raise not_found("assistant", assistant_id)
