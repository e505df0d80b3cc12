"""Objects a request refers to by id must exist in the caller's project (else 404), so no
project can point at, or probe for, another project's files or vector stores."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

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


async def require_files(conn: Connection, project: str, file_ids: Iterable[str]) -> None:
    wanted = list(dict.fromkeys(file_ids))
    if not wanted:
        return
    f = tables.files
    now = ids.now()
    found = set((await conn.execute(select(f.c.id).where(
        f.c.id.in_(wanted), f.c.project_id == project,
        (f.c.expires_at.is_(None)) | (f.c.expires_at > now)))).scalars())
    for file_id in wanted:
        if file_id not in found:
            raise not_found("file", file_id)


async def require_vector_stores(conn: Connection, project: str, store_ids: Iterable[str]
                                ) -> None:
    wanted = list(dict.fromkeys(store_ids))
    if not wanted:
        return
    vs = tables.vector_stores
    found = set((await conn.execute(select(vs.c.id).where(
        vs.c.id.in_(wanted), vs.c.project_id == project))).scalars())
    for store_id in wanted:
        if store_id not in found:
            raise not_found("vector store", store_id)
