"""Lookups that several resources share, in plain SQL run by the driver (see store.db.Sql)."""

from __future__ import annotations

from vtai.server.runs import states
from vtai.server.store.db import Connection, Sql

_ACTIVE = ", ".join(f"'{status}'" for status in sorted(states.ACTIVE))
_THREAD = Sql("SELECT id FROM threads WHERE id = :thread_id AND project_id = :project_id")
_THREAD_AND_ACTIVE_RUN = Sql(
    "SELECT t.id, (SELECT r.id FROM runs AS r WHERE r.thread_id = t.id "
    f"AND r.status IN ({_ACTIVE}) LIMIT 1) FROM threads AS t "
    "WHERE t.id = :thread_id AND t.project_id = :project_id")
_ASSISTANT_AND_ACTIVE_RUNS = Sql(
    "SELECT a.data, (SELECT count(*) FROM runs AS r WHERE r.project_id = :project_id "
    f"AND r.status IN ({_ACTIVE})) FROM assistants AS a "
    "WHERE a.id = :assistant_id AND a.project_id = :project_id")


async def thread_exists(conn: Connection, thread_id: str, project_id: str) -> bool:
    result = await conn.sql(_THREAD, {"thread_id": thread_id, "project_id": project_id})
    return bool(result.rows)


async def thread_activity(conn: Connection, thread_id: str, project_id: str
                          ) -> tuple[bool, str | None]:
    """Whether the thread exists in this project, and its active run if any: one query."""
    result = await conn.sql(_THREAD_AND_ACTIVE_RUN,
                            {"thread_id": thread_id, "project_id": project_id})
    return (False, None) if not result.rows else (True, result.rows[0][1])


async def assistant_and_active_runs(conn: Connection, assistant_id: str, project_id: str
                                    ) -> tuple[str | None, int]:
    """An assistant's stored JSON (None if it is not in this project), and how many runs of
    the project are active: what starting a run checks, in one query."""
    result = await conn.sql(_ASSISTANT_AND_ACTIVE_RUNS,
                            {"assistant_id": assistant_id, "project_id": project_id})
    return (None, 0) if not result.rows else (result.rows[0][0], int(result.rows[0][1]))
