"""A session's local kernel: its workspace, the kernel running in it, its files, and
recovery when a call hits a limit (the local CodeSession, see backend.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter import files
from vtai.server.tools.code_interpreter.kernel import (
    KERNEL_ARGS,
    Kernel,
    Sink,
    write_connection,
)
from vtai.server.tools.code_interpreter.sandbox import Sandbox, Workspace
from vtai.server.tools.code_interpreter.session_rows import SessionState

LOST_STATE = ("the kernel was restarted, so variables, imports and definitions are lost "
              "(files in /mnt/data are kept).")
LOST_ALL = ("the kernel was restarted, so variables, imports and definitions are lost, and "
            "so are the files in /mnt/data (the sandbox was made anew).")


class Session:
    def __init__(self, sandbox: Sandbox, settings: CodeInterpreterSettings,
                 workspace: Workspace, kernel: Kernel) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.workspace = workspace
        self.kernel = kernel
        self.project = ""  # whose session it is, once handed out
        self.generation = 1
        self.lock = asyncio.Lock()  # one call at a time
        self.state = SessionState()
        self.notice = ""  # for the first call's logs (the session's state was reset)
        self.last_used = time.monotonic()
        self.saved_state = self.state.dumps()

    @classmethod
    async def open(cls, sandbox: Sandbox, settings: CodeInterpreterSettings,
                   workspace: Workspace) -> Session:
        sandbox.prepare(workspace)
        try:
            kernel = await _start_kernel(sandbox, settings, workspace, 0)
        except BaseException:
            sandbox.release(workspace)
            raise
        return cls(sandbox, settings, workspace, kernel)

    @property
    def lost(self) -> str:
        """What a restart loses."""
        return LOST_STATE if self.sandbox.keeps_files else LOST_ALL

    @property
    def data(self) -> Path:
        """The session's /mnt/data, as the server reaches it."""
        return self.sandbox.data_dir(self.workspace, self.kernel.pid)

    async def revive(self) -> str:
        """Restart the kernel if it stopped since the last call; returns a note for the logs
        when it did (or when the session is new to a thread that had one), else ""."""
        self.last_used = time.monotonic()
        notice, self.notice = self.notice, ""
        if self.kernel.alive:
            return notice
        await self.restart()
        return (f"Note: the kernel had stopped since the previous call (it crashed, or kept "
                f"using CPU time after the call); {self.lost}")

    def interrupt(self) -> None:
        self.kernel.interrupt()

    async def upload(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        fd = await asyncio.to_thread(files.create, self.data, name, self.workspace.uid)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(files.write_all, fd, chunk)
        finally:
            os.close(fd)

    async def snapshot(self) -> files.Snapshot:
        return await asyncio.to_thread(files.snapshot, self.data)

    async def read(self, relative: str, max_bytes: int) -> bytes | None:
        return await asyncio.to_thread(files.read, self.data, relative, max_bytes)

    async def save(self) -> None:
        """Nothing to do: a local session's state lives with its kernel, in this process
        (another process starts a session of its own)."""

    async def execute(self, code: str, sink: Sink) -> str:
        """Run ``code``; returns a note for the logs when a limit was hit or the kernel had
        to be restarted, else an empty string."""
        self.last_used = time.monotonic()
        notes = []
        settings = self.settings
        ending = await self.kernel.execute(code, settings.timeout, settings.cpu_seconds, sink)
        problem = {
            "timeout": f"Execution timed out after {settings.timeout:g} seconds",
            "cpu": f"Execution used more than {settings.cpu_seconds:g} seconds of CPU time",
            "died": f"The kernel died ({ending.detail}), for instance killed by the system "
                    "for lack of memory",
        }.get(ending.reason)
        if not ending.stopped:
            await self.restart()
            notes.append(f"{problem}; {self.lost}")
        else:
            if problem:
                notes.append(f"{problem}; it was interrupted (variables are kept).")
            if not await self.kernel.tidy():
                await self.restart()
                notes.append(f"Processes started by the code could not be stopped; "
                             f"{self.lost}")
        self.last_used = time.monotonic()
        return "\n".join(notes)

    async def restart(self) -> None:
        await self.kernel.stop()
        shutil.rmtree(self.workspace.ipc_dir(self.generation - 1), ignore_errors=True)
        # A new generation even if this start fails, so the next attempt starts clean.
        self.generation += 1
        if not self.sandbox.keeps_files:
            self.state.placed.clear()  # the input files are placed again when needed
        self.kernel = await _start_kernel(self.sandbox, self.settings, self.workspace,
                                          self.generation - 1)

    async def close(self) -> None:
        await self.kernel.stop()
        self.sandbox.release(self.workspace)


async def _start_kernel(sandbox: Sandbox, settings: CodeInterpreterSettings,
                        workspace: Workspace, generation: int) -> Kernel:
    ipc = workspace.ipc_dir(generation)
    ipc.mkdir(mode=0o700)
    if workspace.uid is not None:
        os.chown(ipc, workspace.uid, workspace.uid)
    connection = write_connection(ipc, workspace.uid)
    command = sandbox.command(workspace, ipc, ["-f", str(connection), *KERNEL_ARGS])
    env, cwd = sandbox.spawn(workspace)
    kernel = await Kernel.start(command, env, cwd, workspace.log, connection,
                                settings.start_timeout, pin=sandbox.shares_uid)
    sandbox.seal(ipc)
    return kernel
