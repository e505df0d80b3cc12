"""Reading and writing object rows: one place for lookups, cursors and JSON encoding."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, Table, bindparam, delete, select

from vtai.server.store.sql import Connection, Sql


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


# Objects are read and written on every request: these statements are plain SQL, made once
# per table (and set of extra columns), and run by the driver (see store.sql.Sql).


@functools.cache
def _insert(table: Table, extra: tuple[str, ...]) -> Sql:
    names = ("id", "project_id", "created_at", "data", *extra)
    return Sql(f"INSERT INTO {table.name} ({', '.join(names)}) "
               f"VALUES ({', '.join(':' + name for name in names)})")


@functools.cache
def _update(table: Table, extra: tuple[str, ...]) -> Sql:
    sets = ", ".join(f"{name} = :{name}" for name in ("data", *extra))
    return Sql(f"UPDATE {table.name} SET {sets} WHERE id = :id")


@functools.cache
def _data_by_id(table: Table) -> Sql:
    return Sql(f"SELECT data FROM {table.name} WHERE id = :object_id "
               "AND project_id = :project_id")


@functools.cache
def _by_id(table: Table) -> Select[Any]:
    # Built once per table: statement construction costs more than SQLite's lookup.
    return select(table.c.data).where(table.c.id == bindparam("object_id"),
                                      table.c.project_id == bindparam("project_id"))


async def insert_object(conn: Connection, table: Table, obj: dict[str, Any],
                        project_id: str, **columns: Any) -> str:
    data = dumps(obj)
    await conn.sql(*insert_statement(table, obj, project_id, data, **columns))
    return data


def insert_statement(table: Table, obj: dict[str, Any], project_id: str, data: str,
                     **columns: Any) -> tuple[Sql, dict[str, Any]]:
    """The statement and parameters that store a new object whose JSON is ``data``."""
    return _insert(table, tuple(columns)), {
        "id": obj["id"], "project_id": project_id, "created_at": obj["created_at"],
        "data": data, **columns}


async def get_data(conn: Connection, table: Table, object_id: str, project_id: str,
                   *where: ColumnElement[bool]) -> str | None:
    """The stored JSON of one object of this project, or None."""
    params = {"object_id": object_id, "project_id": project_id}
    if not where:
        return (await conn.sql(_data_by_id(table), params)).scalar()
    return (await conn.execute(_by_id(table).where(*where), params)).scalar()


async def get_object(conn: Connection, table: Table, object_id: str, project_id: str,
                     *where: ColumnElement[bool]) -> dict[str, Any] | None:
    data = await get_data(conn, table, object_id, project_id, *where)
    return None if data is None else orjson.loads(data)


def update_statement(table: Table, obj: dict[str, Any],
                     **columns: Any) -> tuple[Sql, dict[str, Any]]:
    """The statement and parameters that store a changed object (its JSON is ``data``)."""
    return _update(table, tuple(columns)), {"id": obj["id"], "data": dumps(obj), **columns}


async def save_object(conn: Connection, table: Table, obj: dict[str, Any],
                      **columns: Any) -> str:
    statement, params = update_statement(table, obj, **columns)
    await conn.sql(statement, params)
    return str(params["data"])


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
