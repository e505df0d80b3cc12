"""Lookups that several resources share, built once (construction costs more than the query)."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select

from vtai.server.runs import states
from vtai.server.store import tables
from vtai.server.store.db import Connection

_t, _r = tables.threads, tables.runs
_ACTIVE_RUN = (
    select(_r.c.id)
    .where(_r.c.thread_id == bindparam("thread_id"), _r.c.status.in_(sorted(states.ACTIVE)))
    .limit(1)
)
_THREAD = select(_t.c.id).where(_t.c.id == bindparam("thread_id"),
                                 _t.c.project_id == bindparam("project_id"))
_THREAD_AND_ACTIVE_RUN = select(
    _t.c.id,
    select(_r.c.id).where(_r.c.thread_id == _t.c.id, _r.c.status.in_(sorted(states.ACTIVE)))
    .limit(1).scalar_subquery().label("active_run_id"),
).where(_t.c.id == bindparam("thread_id"), _t.c.project_id == bindparam("project_id"))


async def thread_exists(conn: Connection, thread_id: str, project_id: str) -> bool:
    result = await conn.execute(_THREAD, {"thread_id": thread_id, "project_id": project_id})
    return result.first() is not None


async def active_run_id(conn: Connection, thread_id: str) -> str | None:
    """The run of this thread that is not finished yet, if any (there is at most one)."""
    return (await conn.execute(_ACTIVE_RUN, {"thread_id": thread_id})).scalar()


async def thread_activity(conn: Connection, thread_id: str, project_id: str
                          ) -> tuple[bool, str | None]:
    """Whether the thread exists in this project, and its active run if any: one query."""
    row = (await conn.execute(_THREAD_AND_ACTIVE_RUN,
                              {"thread_id": thread_id, "project_id": project_id})).first()
    return (False, None) if row is None else (True, row.active_run_id)


_ACTIVE_IN_PROJECT = select(func.count()).select_from(_r).where(
    _r.c.project_id == bindparam("project_id"), _r.c.status.in_(sorted(states.ACTIVE)))


async def active_runs_in_project(conn: Connection, project_id: str) -> int:
    return int((await conn.execute(_ACTIVE_IN_PROJECT, {"project_id": project_id})).scalar()
               or 0)
