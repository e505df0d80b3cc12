"""Objects a request refers to by id must exist in the caller's project (else 404), so no
project can point at, or probe for, another project's files or vector stores."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, select

from vtai.server import ids
from vtai.server.api.errors import not_found
from vtai.server.store import tables
from vtai.server.store.db import Connection


def message_file_ids(message: Any) -> list[str]:
    """Files a message request refers to: attachments and image_file parts."""
    found = [a.file_id for a in message.attachments or []]
    if not isinstance(message.content, str):
        found += [p.image_file.file_id for p in message.content
                  if getattr(p, "type", "") == "image_file"]
    return found


def resource_file_ids(tool_resources: Any) -> list[str]:
    code = getattr(tool_resources, "code_interpreter", None) if tool_resources else None
    return list(code.file_ids) if code else []


async def _require(conn: Connection, table: Table, kind: str, project: str,
                   object_ids: Iterable[str], *where: ColumnElement[bool]) -> None:
    """404 naming the first of ``object_ids`` that is not a row of ``table`` in the project."""
    wanted = list(dict.fromkeys(object_ids))
    if not wanted:
        return
    found = set((await conn.execute(select(table.c.id).where(
        table.c.id.in_(wanted), table.c.project_id == project, *where))).scalars())
    for object_id in wanted:
        if object_id not in found:
            raise not_found(kind, object_id)


async def require_files(conn: Connection, project: str, file_ids: Iterable[str]) -> None:
    wanted = list(file_ids)
    if wanted:  # (building the condition costs more than most requests that have no files)
        f = tables.files
        await _require(conn, f, "file", project, wanted,
                       f.c.expires_at.is_(None) | (f.c.expires_at > ids.now()))


async def require_vector_stores(conn: Connection, project: str, store_ids: Iterable[str]
                                ) -> None:
    await _require(conn, tables.vector_stores, "vector store", project, store_ids)
