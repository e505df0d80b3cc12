"""Objects a request refers to by id must exist in the caller's project (else 404), so no
project can point at, or probe for, another project's files or vector stores."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Table, select

from vtai.server.errors import not_found
from vtai.server.store import tables
from vtai.server.store.files import live
from vtai.server.store.sql import Connection


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
        await _require(conn, tables.files, "file", project, wanted, live())


async def require_vector_stores(conn: Connection, project: str, store_ids: Iterable[str]
                                ) -> None:
    await _require(conn, tables.vector_stores, "vector store", project, store_ids)
