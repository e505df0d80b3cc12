"""A thread's session: its workspace, the kernel running in it, and recovery when a call
hits a limit."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.kernel import (
    KERNEL_ARGS,
    Kernel,
    Sink,
    write_connection,
)
from vtai.server.tools.code_interpreter.sandbox import Sandbox, Workspace

LOST_STATE = ("the kernel was restarted, so variables, imports and definitions are lost "
              "(files in /mnt/data are kept).")


class Session:
    def __init__(self, sandbox: Sandbox, settings: CodeInterpreterSettings,
                 workspace: Workspace, kernel: Kernel) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.workspace = workspace
        self.kernel = kernel
        self.generation = 1
        self.lock = asyncio.Lock()  # one call at a time
        self.placed: dict[str, str] = {}  # input file id -> its name in the data directory
        self.copied_out = 0  # bytes of its images and files made Files, for its budget
        self.last_used = time.monotonic()

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

    async def revive(self) -> str:
        """Restart the kernel if it stopped since the last call; returns a note for the logs
        when it did, else an empty string."""
        self.last_used = time.monotonic()
        if self.kernel.alive:
            return ""
        await self.restart()
        return (f"Note: the kernel had stopped since the previous call (it crashed, or kept "
                f"using CPU time after the call); {LOST_STATE}")

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
            notes.append(f"{problem}; {LOST_STATE}")
        else:
            if problem:
                notes.append(f"{problem}; it was interrupted (variables are kept).")
            if not await self.kernel.tidy():
                await self.restart()
                notes.append(f"Processes started by the code could not be stopped; "
                             f"{LOST_STATE}")
        self.last_used = time.monotonic()
        return "\n".join(notes)

    async def restart(self) -> None:
        await self.kernel.stop()
        shutil.rmtree(self.workspace.ipc_dir(self.generation - 1), ignore_errors=True)
        # A new generation even if this start fails, so the next attempt starts clean.
        self.generation += 1
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
                                settings.start_timeout)
    sandbox.seal(ipc)
    return kernel
