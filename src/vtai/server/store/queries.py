"""Lookups that several resources share."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from vtai.server.runs import states
from vtai.server.store import tables


async def thread_exists(conn: AsyncConnection, thread_id: str, project_id: str) -> bool:
    t = tables.threads
    query = select(t.c.id).where(t.c.id == thread_id, t.c.project_id == project_id)
    return (await conn.execute(query)).first() is not None


async def active_run_id(conn: AsyncConnection, thread_id: str) -> str | None:
    """The run of this thread that is not finished yet, if any (there is at most one)."""
    r = tables.runs
    query = select(r.c.id).where(r.c.thread_id == thread_id, r.c.status.in_(states.ACTIVE))
    return (await conn.execute(query.limit(1))).scalar()
