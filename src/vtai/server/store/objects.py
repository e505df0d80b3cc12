"""Reading and writing object rows: one place for lookups, cursors and JSON encoding."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, Table, bindparam, delete, insert, select, update

from vtai.server.store.db import Connection


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@dataclass(frozen=True)
class Page:
    rows: list[str]  # the objects' stored JSON
    first_id: str | None
    last_id: str | None
    has_more: bool

    def to_json(self) -> bytes:
        first = orjson.dumps(self.first_id).decode()
        last = orjson.dumps(self.last_id).decode()
        more = "true" if self.has_more else "false"
        return (
            f'{{"object":"list","data":[{",".join(self.rows)}],'
            f'"first_id":{first},"last_id":{last},"has_more":{more}}}'
        ).encode()


async def insert_object(conn: Connection, table: Table, obj: dict[str, Any],
                        project_id: str, **columns: Any) -> str:
    data = dumps(obj)
    await conn.execute(insert(table).values(
        id=obj["id"], project_id=project_id, created_at=obj["created_at"], data=data, **columns,
    ))
    return data


@functools.cache
def _by_id(table: Table) -> Select[Any]:
    # Built once per table: statement construction costs more than SQLite's lookup.
    return select(table.c.data).where(table.c.id == bindparam("object_id"),
                                      table.c.project_id == bindparam("project_id"))


async def get_data(conn: Connection, table: Table, object_id: str, project_id: str,
                   *where: ColumnElement[bool]) -> str | None:
    """The stored JSON of one object of this project, or None."""
    query = _by_id(table).where(*where) if where else _by_id(table)
    params = {"object_id": object_id, "project_id": project_id}
    return (await conn.execute(query, params)).scalar()


async def get_object(conn: Connection, table: Table, object_id: str, project_id: str,
                     *where: ColumnElement[bool]) -> dict[str, Any] | None:
    data = await get_data(conn, table, object_id, project_id, *where)
    return None if data is None else orjson.loads(data)


async def save_object(conn: Connection, table: Table, obj: dict[str, Any],
                      **columns: Any) -> str:
    data = dumps(obj)
    await conn.execute(update(table).where(table.c.id == obj["id"]).values(data=data, **columns))
    return data


async def delete_objects(conn: Connection, table: Table,
                         *where: ColumnElement[bool]) -> int:
    result = await conn.execute(delete(table).where(*where))
    return int(getattr(result, "rowcount", 0) or 0)


async def list_page(
    conn: Connection,
    table: Table,
    where: Iterable[ColumnElement[bool]],
    *,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> Page:
    """One page in OpenAI's list semantics; cursors are ids, which sort by creation."""
    conditions = list(where)
    descending = order == "desc"
    if after is not None:
        conditions.append(table.c.id < after if descending else table.c.id > after)
    if before is not None:
        conditions.append(table.c.id > before if descending else table.c.id < before)
    # With only `before`, walk backwards from the cursor, then restore the requested order.
    backwards = before is not None and after is None
    ascending = descending == backwards
    key = table.c.id.asc() if ascending else table.c.id.desc()
    query = select(table.c.id, table.c.data).where(*conditions).order_by(key).limit(limit + 1)
    rows = list((await conn.execute(query)).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    return Page(
        rows=[r.data for r in rows],
        first_id=rows[0].id if rows else None,
        last_id=rows[-1].id if rows else None,
        has_more=has_more,
    )
