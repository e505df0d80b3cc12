"""Lookups that several resources share, in plain SQL run by the driver (see store.db.Sql)."""

from __future__ import annotations

from vtai.server.runs import states
from vtai.server.store.db import Connection, Sql

_ACTIVE = ", ".join(f"'{status}'" for status in sorted(states.ACTIVE))
_ACTIVE_RUN = Sql(f"SELECT id FROM runs WHERE thread_id = :thread_id AND status IN ({_ACTIVE}) "
                  "LIMIT 1")
_THREAD = Sql("SELECT id FROM threads WHERE id = :thread_id AND project_id = :project_id")
_THREAD_AND_ACTIVE_RUN = Sql(
    "SELECT t.id, (SELECT r.id FROM runs AS r WHERE r.thread_id = t.id "
    f"AND r.status IN ({_ACTIVE}) LIMIT 1) FROM threads AS t "
    "WHERE t.id = :thread_id AND t.project_id = :project_id")
_ACTIVE_IN_PROJECT = Sql(
    f"SELECT count(*) FROM runs WHERE project_id = :project_id AND status IN ({_ACTIVE})")


async def thread_exists(conn: Connection, thread_id: str, project_id: str) -> bool:
    result = await conn.sql(_THREAD, {"thread_id": thread_id, "project_id": project_id})
    return bool(result.rows)


async def active_run_id(conn: Connection, thread_id: str) -> str | None:
    """The run of this thread that is not finished yet, if any (there is at most one)."""
    return (await conn.sql(_ACTIVE_RUN, {"thread_id": thread_id})).scalar()


async def thread_activity(conn: Connection, thread_id: str, project_id: str
                          ) -> tuple[bool, str | None]:
    """Whether the thread exists in this project, and its active run if any: one query."""
    result = await conn.sql(_THREAD_AND_ACTIVE_RUN,
                            {"thread_id": thread_id, "project_id": project_id})
    return (False, None) if not result.rows else (True, result.rows[0][1])


async def active_runs_in_project(conn: Connection, project_id: str) -> int:
    return int((await conn.sql(_ACTIVE_IN_PROJECT, {"project_id": project_id})).scalar() or 0)
