"""What a code session is to those that use it (the tool, and containers): a stateful Python
kernel with a /mnt/data directory, named by the caller's project and an opaque session id (a
thread's id, a container's id), whatever runs it (local kernels or a Jupyter gateway).

    sessions = <a CodeSessions>              # one per process, started with the server
    session = await sessions.session(project, session_id)
    async with session.lock:                 # one call at a time
        note = await session.revive()        # "" or what happened to it since the last call
        await session.upload("data.csv", chunks)
        before = await session.snapshot()
        note = await session.execute(code, sink)
        for path in files.written(before, await session.snapshot()):
            content = await session.read(path, max_bytes)
        await session.save()                 # placed files and bytes copied out, for later
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from vtai.server.tools.code_interpreter.files import Snapshot
from vtai.server.tools.code_interpreter.kernel import Sink
from vtai.server.tools.code_interpreter.session_rows import SessionState


class Unavailable(Exception):
    """Code cannot run here (no sandbox, no gateway, too many busy sessions)."""


class CodeSession(Protocol):
    lock: asyncio.Lock  # held around a call: one at a time
    state: SessionState  # input files placed, bytes copied out

    async def revive(self) -> str:
        """Make sure a kernel runs; returns a note for the call's logs when the session's
        state was lost since its last call (a restart, a new kernel), else ""."""
        ...

    async def execute(self, code: str, sink: Sink) -> str:
        """Run ``code`` within the limits, passing its outputs to ``sink``; returns a note
        for the logs when a limit was hit or the kernel was restarted, else ""."""
        ...

    def interrupt(self) -> None:
        """Stop the running code (the run was cancelled)."""
        ...

    async def upload(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        """Write a file named ``name`` (no directories) in /mnt/data, replacing one there."""
        ...

    async def snapshot(self) -> Snapshot:
        """The files below /mnt/data (not hidden ones), to tell which ones a call wrote."""
        ...

    async def read(self, relative: str, max_bytes: int) -> bytes | None:
        """A file below /mnt/data, or None if it is not a regular file; raises files.TooBig,
        without reading it, past ``max_bytes``."""
        ...

    async def save(self) -> None:
        """Keep ``state`` where the session's next call, in any process, finds it."""
        ...


class CodeSessions(Protocol):
    unavailable: str | None  # why code cannot run here, or None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def session(self, project: str, session_id: str) -> CodeSession:
        """The session's kernel, continued or new; raises Unavailable."""
        ...
