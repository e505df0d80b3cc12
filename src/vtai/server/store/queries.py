"""Lookups that several resources share, in plain SQL run by the driver (see store.sql.Sql)."""

from __future__ import annotations

from typing import NamedTuple

from vtai.server.store import tables
from vtai.server.store.sql import Connection, Sql

_ACTIVE = tables.ACTIVE_STATUSES
_THREAD = Sql("SELECT id FROM threads WHERE id = :thread_id AND project_id = :project_id")


def _active_run_of(thread: str) -> str:
    """A subquery: the id of the thread's run that is not finished yet, if any."""
    return (f"(SELECT r.id FROM runs AS r WHERE r.thread_id = {thread} "
            f"AND r.status IN ({_ACTIVE}) LIMIT 1)")


_THREAD_AND_ACTIVE_RUN = Sql(
    f"SELECT t.id, {_active_run_of('t.id')} FROM threads AS t "
    "WHERE t.id = :thread_id AND t.project_id = :project_id")
# The project's active runs are counted up to the limit only (``:limit``; 0: not counted):
# whether the project is at it is all that matters, so the scan stops there.
_RUN_START = (
    "a.data, (SELECT count(*) FROM (SELECT 1 FROM runs AS r WHERE r.project_id = :project_id "
    f"AND r.status IN ({_ACTIVE}) LIMIT :limit) AS counted), "
    "(SELECT t.id FROM threads AS t WHERE t.id = :thread_id AND t.project_id = :project_id), "
    f"{_active_run_of(':thread_id')} "
    "FROM assistants AS a WHERE a.id = :assistant_id AND a.project_id = :project_id")
_THREAD_ROWS = ("SELECT 0, id, data{pad} FROM messages WHERE thread_id = :thread_id UNION ALL "
                "SELECT 1, id, data{pad} FROM run_steps WHERE thread_id = :thread_id")
THREAD_ROWS = Sql(_THREAD_ROWS.format(pad="") + " ORDER BY 1, 2")
"""A thread's messages (kind 0) and run steps (kind 1), oldest first: ``(kind, id, data)``."""
_RUN_START_ONLY = Sql("SELECT " + _RUN_START)
# The same, then the thread's rows (THREAD_ROWS) in the same result, the start row first.
_RUN_START_AND_THREAD = Sql("SELECT -1, '', " + _RUN_START + " UNION ALL "
                            + _THREAD_ROWS.format(pad=", NULL, NULL, NULL") + " ORDER BY 1, 2")


class RunStart(NamedTuple):
    """What starting a run checks, read at once."""

    assistant: str | None  # the assistant's stored JSON, None if it is not in the project
    active_in_project: int  # runs of the project not finished yet, counted up to the limit
    thread_exists: bool
    thread_active_run: str | None
    thread_rows: list[tuple[int, str, str]] | None = None  # THREAD_ROWS, when asked for


async def thread_exists(conn: Connection, thread_id: str, project_id: str) -> bool:
    result = await conn.sql(_THREAD, {"thread_id": thread_id, "project_id": project_id})
    return bool(result.rows)


async def thread_activity(conn: Connection, thread_id: str, project_id: str
                          ) -> tuple[bool, str | None]:
    """Whether the thread exists in this project, and its active run if any: one query."""
    result = await conn.sql(_THREAD_AND_ACTIVE_RUN,
                            {"thread_id": thread_id, "project_id": project_id})
    return (False, None) if not result.rows else (True, result.rows[0][1])


async def run_start(conn: Connection, assistant_id: str, project_id: str,
                    thread_id: str | None, limit: int, thread_rows: bool = False) -> RunStart:
    """The assistant, the project's active runs (counted up to ``limit``; 0: not counted)
    and (for an existing thread) whether the thread exists and its active run, and with
    ``thread_rows`` the thread's messages and steps as THREAD_ROWS gives them (valid if the
    thread exists): one query."""
    params = {"assistant_id": assistant_id, "project_id": project_id,
              "thread_id": thread_id or "", "limit": limit}
    rest: list[tuple[int, str, str]] | None = None
    if thread_rows:
        rows = (await conn.sql(_RUN_START_AND_THREAD, params)).rows
        start = rows[0][2:] if rows and rows[0][0] == -1 else None
        rest = [(kind, id_, data) for kind, id_, data, *_ in rows[1:]]
    else:
        rows = (await conn.sql(_RUN_START_ONLY, params)).rows
        start = rows[0] if rows else None
    if start is None:
        return RunStart(None, 0, False, None)
    data, active, thread, thread_run = start
    return RunStart(data, int(active), thread is not None, thread_run, rest)


_RUN_COUNTS = Sql("SELECT status, count(*) FROM runs GROUP BY status")


async def run_counts(conn: Connection) -> dict[str, int]:
    """The runs stored, by status, over every project."""
    return {row[0]: int(row[1]) for row in (await conn.sql(_RUN_COUNTS)).rows}
