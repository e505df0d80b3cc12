"""The sessions of this process: one per thread, handed out from a pool of started ones so
that a new thread does not wait for a kernel to start, and stopped when idle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.sandbox import Sandbox, Workspace
from vtai.server.tools.code_interpreter.session import Session

log = logging.getLogger("vtai.tools.code_interpreter")

PROBE_TIMEOUT = 30.0
FILL_RETRY_SECONDS = 30.0  # after a pool kernel failed to start
UIDS_PER_PROCESS = 256  # see settings.py: pool_size + max_sessions stay below
WATCH_SECONDS = 2.0  # how often idle sessions are checked


class Unavailable(Exception):
    """Code cannot run here (no sandbox, too many busy sessions)."""


class Pool:
    def __init__(self, settings: CodeInterpreterSettings, sandbox: Sandbox, base: Path) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.base = base
        # Per process: several servers and workers may share one data directory.
        self.root = base / str(os.getpid())
        self.ready: list[Session] = []
        self.threads: dict[str, Session] = {}
        self.unavailable: str | None = "the code interpreter has not started"
        self._uids: set[int] = set()
        self._starting = 0
        self._filler: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._fill_failed_at = -FILL_RETRY_SECONDS

    async def start(self) -> None:
        self.unavailable = self.sandbox.unavailable() or await self._probe()
        if self.unavailable:
            log.error("code interpreter unavailable: %s. Calls to it will answer with this "
                      "error.", self.unavailable)
            return
        self._remove_stale()
        s = self.settings
        if self.sandbox.isolated:
            log.info("code interpreter: kernels in %s sandboxes (no network, own uid, "
                     "%d s and %g CPU s per call, %d MB memory, %d processes, %d MB disk), "
                     "pool of %d", self.sandbox.name, s.timeout, s.cpu_seconds, s.memory_mb,
                     s.max_processes, s.disk_mb, s.pool_size)
        else:
            log.warning("code interpreter: kernels run WITHOUT a sandbox "
                        "(VTAI_CODE_SANDBOX=none): model-written code can use the network "
                        "and every file this server's user can")
        self._reaper = asyncio.create_task(self._reap())
        self._fill()

    async def stop(self) -> None:
        for task in (self._filler, self._reaper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sessions = [*self.ready, *self.threads.values()]
        self.ready.clear()
        self.threads.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()

    async def session(self, thread_id: str) -> Session:
        """The thread's session, from the pool when it has none yet."""
        if self.unavailable:
            raise Unavailable(self.unavailable)
        session = self.threads.get(thread_id)
        if session is not None:
            return session
        if len(self.threads) >= self.settings.max_sessions:
            await self._evict()
        while self.ready and not self.ready[0].kernel.alive:
            await self._close(self.ready.pop(0))
        session = self.ready.pop(0) if self.ready else await self._open()
        self.threads[thread_id] = session
        self._fill()
        return session

    async def _open(self) -> Session:
        uid = None
        if self.sandbox.isolated:
            first = self._first_uid()
            uid = next(first + n for n in range(len(self._uids) + 1)
                       if first + n not in self._uids)
            self._uids.add(uid)
        workspace = Workspace(self.root / secrets.token_hex(4), uid)
        self._starting += 1
        try:
            return await Session.open(self.sandbox, self.settings, workspace)
        except BaseException:
            if uid is not None:
                self._uids.discard(uid)
            raise
        finally:
            self._starting -= 1

    def _first_uid(self) -> int:
        """Each process has uids of its own (by pid), so that sessions of several servers
        or workers on one host never share a uid, nor its process limit."""
        return self.settings.uid_base + os.getpid() * UIDS_PER_PROCESS

    async def _close(self, session: Session) -> None:
        await session.close()
        if session.workspace.uid is not None:
            self._uids.discard(session.workspace.uid)

    async def _evict(self) -> None:
        idle = [(s.last_used, t) for t, s in self.threads.items() if not s.lock.locked()]
        if not idle:
            raise Unavailable(f"all {self.settings.max_sessions} code sessions are busy; "
                              "try again later")
        _, thread_id = min(idle)
        await self._close(self.threads.pop(thread_id))

    def _fill(self) -> None:
        missing = self.settings.pool_size - len(self.ready) - self._starting
        if missing <= 0 or (self._filler is not None and not self._filler.done()):
            return
        if time.monotonic() - self._fill_failed_at < FILL_RETRY_SECONDS:
            return
        self._filler = asyncio.create_task(self._fill_up())

    async def _fill_up(self) -> None:
        # One kernel at a time: a start takes a core for a moment, and runs come first.
        while len(self.ready) + self._starting < self.settings.pool_size:
            try:
                self.ready.append(await self._open())
            except Exception:
                log.exception("code interpreter: a pool kernel failed to start")
                self._fill_failed_at = time.monotonic()
                return

    async def _reap(self) -> None:
        """Stop sessions left idle too long, and kernels that use CPU time between calls
        (threads the code left spinning): their next call starts a new kernel."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            for thread_id, session in list(self.threads.items()):
                if session.lock.locked():
                    continue
                if now - session.last_used > self.settings.idle_seconds:
                    del self.threads[thread_id]
                    log.info("code interpreter: stopping the idle session of %s", thread_id)
                    await self._close(session)
                elif session.kernel.alive and \
                        session.kernel.idle_cpu_seconds() > self.settings.idle_cpu_seconds:
                    log.info("code interpreter: stopping the kernel of %s, busy between "
                             "calls", thread_id)
                    await session.kernel.stop()

    async def _probe(self) -> str | None:
        """Run the sandbox once, as a kernel would start but without the kernel, so that a
        host where it cannot work is reported at start-up."""
        workspace = Workspace(self.base / f"probe-{os.getpid()}", self._first_uid())
        try:
            self.sandbox.release(workspace)
            self.sandbox.prepare(workspace)
            ipc = workspace.ipc_dir(0)
            ipc.mkdir()
            env, cwd = self.sandbox.spawn(workspace)
            process = await asyncio.create_subprocess_exec(
                *self.sandbox.command(workspace, ipc, [], check=True), env=env, cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            output, _ = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
            if process.returncode != 0:
                return (f"the {self.sandbox.name} sandbox failed to start "
                        f"(exit status {process.returncode}): "
                        f"{output.decode(errors='replace').strip()}")
            return None
        except (TimeoutError, OSError) as err:
            return f"the {self.sandbox.name} sandbox could not be set up: {err}"
        finally:
            self.sandbox.release(workspace)

    def _remove_stale(self) -> None:
        """Session directories (and mounts) left by processes of this host that died."""
        if not self.base.is_dir():
            return
        for entry in self.base.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid != os.getpid():
                try:
                    os.kill(pid, 0)
                    continue  # a live process's sessions
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue
            for session in entry.iterdir():
                self.sandbox.release(Workspace(session, None))
            with contextlib.suppress(OSError):
                entry.rmdir()
