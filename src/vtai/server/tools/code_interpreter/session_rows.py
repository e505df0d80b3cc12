"""The code_sessions table: what every process knows of a code session. A local kernel's
holder (this process, renewed while the kernel lives) so that the session's next run goes to
it first; a gateway kernel's id, so that any process continues it; and what the session did
that a later call in any process must know (input files placed, bytes copied out)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, delete, exists, insert, select, update

from vtai.server import ids
from vtai.server.store import tables
from vtai.server.store.db import Database

# This process, as a holder of local kernels: unique across hosts and restarts.
HOLDER = f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"
HOLD_SECONDS = 30  # a holder renews its sessions well before; a dead one's lapse after this

_t = tables.code_sessions


@dataclass
class SessionState:
    """What later calls of a session must know, in whatever process they run."""

    placed: dict[str, str] = field(default_factory=dict)  # input file id -> name in /mnt/data
    copied_out: int = 0  # bytes of images and files made Files, for the session's budget

    def dumps(self) -> str:
        return orjson.dumps({"placed": self.placed, "copied_out": self.copied_out}).decode()

    @classmethod
    def loads(cls, text: str) -> SessionState:
        data = orjson.loads(text)
        return cls(dict(data.get("placed") or {}), int(data.get("copied_out") or 0))


@dataclass
class Row:
    session_id: str
    project: str
    backend: str
    kernel_id: str | None
    holder: str | None
    holder_expires_at: int | None
    state: SessionState
    ended: str | None

    def held_elsewhere(self, now: int | None = None) -> bool:
        return (self.holder is not None and self.holder != HOLDER
                and (self.holder_expires_at or 0) >= (now or ids.now()))


def _row(found: Any) -> Row:
    return Row(found.session_id, found.project_id, found.backend, found.kernel_id,
               found.holder, found.holder_expires_at, SessionState.loads(found.state),
               found.ended)


def held_elsewhere(session_column: Any, now: int) -> ColumnElement[bool]:
    """Whether the session named by ``session_column`` (a run's thread, say) has a local
    kernel that another live process holds: the worker claim leaves such runs to it."""
    return exists(select(_t.c.session_id).where(
        _t.c.session_id == session_column, _t.c.holder.is_not(None), _t.c.holder != HOLDER,
        _t.c.holder_expires_at >= now))


class SessionRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, project: str, session_id: str) -> Row | None:
        async with self.db.read() as conn:
            found = (await conn.execute(select(_t).where(
                _t.c.session_id == session_id, _t.c.project_id == project))).first()
        return _row(found) if found is not None else None

    async def held_elsewhere(self, session_id: str) -> bool:
        async with self.db.read() as conn:
            found = (await conn.execute(select(_t.c.holder, _t.c.holder_expires_at).where(
                _t.c.session_id == session_id))).first()
        return found is not None and found.holder not in (None, HOLDER) and \
            (found.holder_expires_at or 0) >= ids.now()

    async def begin(self, project: str, session_id: str, backend: str,
                    kernel_id: str | None = None) -> None:
        """A new kernel for the session: held by this process (local) or named (gateway),
        with a fresh state."""
        now = ids.now()
        local = backend == "local"
        values = {"project_id": project, "backend": backend, "kernel_id": kernel_id,
                  "holder": HOLDER if local else None,
                  "holder_expires_at": now + HOLD_SECONDS if local else None,
                  "state": SessionState().dumps(), "ended": None, "last_used_at": now}
        async with self.db.write() as conn:
            changed = await conn.execute(update(_t).where(_t.c.session_id == session_id)
                                         .values(**values))
            if not changed.rowcount:
                await conn.execute(insert(_t).values(session_id=session_id, **values))

    async def save(self, session_id: str, state: SessionState) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(_t).where(_t.c.session_id == session_id).values(
                state=state.dumps(), last_used_at=ids.now()))

    async def renew(self, session_ids: list[str]) -> None:
        """This process still holds these sessions' kernels."""
        if not session_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(update(_t).where(
                _t.c.session_id.in_(session_ids), _t.c.holder == HOLDER).values(
                holder_expires_at=ids.now() + HOLD_SECONDS))

    async def end(self, session_ids: list[str], why: str, kernel_id: str | None = None
                  ) -> None:
        """The sessions' kernels are gone (``why``, for the next kernel's first logs); with
        ``kernel_id``, only if the session still names that kernel."""
        if not session_ids:
            return
        where: list[ColumnElement[bool]] = [_t.c.session_id.in_(session_ids)]
        if kernel_id is not None:
            where.append(_t.c.kernel_id == kernel_id)
        else:
            where.append(_t.c.holder == HOLDER)
        async with self.db.write() as conn:
            await conn.execute(update(_t).where(and_(*where)).values(
                holder=None, holder_expires_at=None, kernel_id=None, ended=why))

    async def idle(self, backend: str, before: int, limit: int = 100) -> list[Row]:
        """Sessions of ``backend`` with a kernel, unused since ``before``."""
        async with self.db.read() as conn:
            found = (await conn.execute(select(_t).where(
                _t.c.backend == backend, _t.c.kernel_id.is_not(None),
                _t.c.last_used_at < before).limit(limit))).all()
        return [_row(row) for row in found]

    async def forget(self, session_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(delete(_t).where(_t.c.session_id == session_id))


def reset_note(previous: Row | None) -> str:
    """The first logs of a session's new kernel when the session had one before."""
    if previous is None:
        return ""
    if previous.held_elsewhere():
        why = "is held by another worker, which did not take this run"
    elif previous.holder is not None:
        why = "ended with the worker that held it"
    else:
        why = previous.ended or "ended"
    return (f"Note: this is a new Python session: the previous one {why}, so variables, "
            "imports and files written in /mnt/data by earlier calls are gone.")
