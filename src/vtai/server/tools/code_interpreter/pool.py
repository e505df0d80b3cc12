"""Local kernels: the sessions of this process, one per session id (a thread's, a
container's), handed out from a pool of started ones so that a new session does not wait for
a kernel to start, and stopped when idle. The sessions this process holds are written in the
code_sessions table (renewed while they live), so that a session's next run comes here first
(runs/worker.py), and a session that starts where another one ended says so in its first
logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.backend import Unavailable
from vtai.server.tools.code_interpreter.sandbox import Sandbox, Workspace
from vtai.server.tools.code_interpreter.session import Session
from vtai.server.tools.code_interpreter.session_rows import (
    HOLD_SECONDS,
    SessionRows,
    reset_note,
)

log = logging.getLogger("vtai.tools.code_interpreter")

PROBE_TIMEOUT = 30.0
FILL_RETRY_SECONDS = 30.0  # after a pool kernel failed to start
UIDS_PER_PROCESS = 256  # see settings.py: pool_size + max_sessions stay below
WATCH_SECONDS = 2.0  # how often idle sessions are checked


UNSANDBOXED_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! code interpreter: kernels run WITHOUT a sandbox (VTAI_CODE_SANDBOX=none).
!!! Model-written code runs as this server's user: it can use the network and read,
!!! change or delete every file this user can (the database and API keys included).
!!! Use it only on a machine where that is acceptable.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


class Pool:
    def __init__(self, settings: CodeInterpreterSettings, sandbox: Sandbox, base: Path,
                 rows: SessionRows) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.base = base
        self.rows = rows
        # Per process: several servers and workers may share one data directory.
        self.root = base / str(os.getpid())
        self.ready: list[Session] = []
        self.threads: dict[str, Session] = {}  # session id -> its session
        self.unavailable: str | None = "the code interpreter has not started"
        self._uids: set[int] = set()
        self._starting = 0
        self._filler: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._fill_failed_at = -FILL_RETRY_SECONDS
        self._renewed = 0.0

    async def start(self) -> None:
        self.unavailable = self.sandbox.unavailable() or await self._probe()
        if self.unavailable:
            log.error("code interpreter unavailable: %s. Calls to it will answer with this "
                      "error.", self.unavailable)
            return
        self._remove_stale()
        s = self.settings
        if self.sandbox.isolated:
            log.info("code interpreter: kernels in %s sandboxes (no network, own %s, "
                     "%d s and %g CPU s per call, %d MB memory, %d processes, %d MB disk), "
                     "pool of %d", self.sandbox.name,
                     "user namespace" if self.sandbox.shares_uid else "uid",
                     s.timeout, s.cpu_seconds, s.memory_mb, s.max_processes, s.disk_mb,
                     s.pool_size)
        else:
            log.warning(UNSANDBOXED_WARNING)
        self._reaper = asyncio.create_task(self._reap())
        self._fill()

    async def stop(self) -> None:
        for task in (self._filler, self._reaper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sessions = [*self.ready, *self.threads.values()]
        held = list(self.threads)
        self.ready.clear()
        self.threads.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.rows.end(held, "ended when the worker that held it stopped")
        with contextlib.suppress(OSError):
            self.root.rmdir()

    async def session(self, project: str, session_id: str) -> Session:
        """The session's kernel in this process, or a new one from the pool (whose first
        logs say so when the session had a kernel before)."""
        if self.unavailable:
            raise Unavailable(self.unavailable)
        session = self.threads.get(session_id)
        if session is not None and session.project == project:
            return session
        if session is not None:  # (ids are unique: another project's is not this one)
            raise Unavailable("this code session belongs to another project")
        previous = await self.rows.get(project, session_id)
        if len(self.threads) >= self.settings.max_sessions:
            await self._evict()
        while self.ready and not self.ready[0].kernel.alive:
            await self._close(self.ready.pop(0))
        session = self.ready.pop(0) if self.ready else await self._open()
        if session_id in self.threads:  # made meanwhile by another call of the session
            self.ready.append(session)
            return self.threads[session_id]
        session.project = project
        session.notice = reset_note(previous)
        self.threads[session_id] = session
        self._fill()
        await self.rows.begin(project, session_id, "local")
        return session

    async def _open(self) -> Session:
        uid = None
        if self.sandbox.isolated and not self.sandbox.shares_uid:
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
        _, session_id = min(idle)
        await self._close(self.threads.pop(session_id))
        await self.rows.end([session_id], "was stopped to make room for another session "
                                          "(VTAI_CODE_MAX_SESSIONS)")

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
            if now - self._renewed > HOLD_SECONDS / 3:
                try:
                    await self.rows.renew(list(self.threads))
                    self._renewed = now
                except Exception:
                    log.exception("code interpreter: could not renew the sessions held")
            for thread_id, session in list(self.threads.items()):
                if session.lock.locked():
                    continue
                if now - session.last_used > self.settings.idle_seconds:
                    del self.threads[thread_id]
                    log.info("code interpreter: stopping the idle session of %s", thread_id)
                    await self._close(session)
                    with contextlib.suppress(Exception):
                        await self.rows.end([thread_id], "was stopped after "
                                            f"{self.settings.idle_seconds:g} seconds without "
                                            "a call")
                elif session.kernel.alive and \
                        session.kernel.idle_cpu_seconds() > self.settings.idle_cpu_seconds:
                    log.info("code interpreter: stopping the kernel of %s, busy between "
                             "calls", thread_id)
                    await session.kernel.stop()

    async def _probe(self) -> str | None:
        """Run the sandbox once, as a kernel would start but without the kernel, so that a
        host where it cannot work is reported at start-up."""
        uid = None if self.sandbox.shares_uid else self._first_uid()
        workspace = Workspace(self.base / f"probe-{os.getpid()}", uid)
        try:
            self.sandbox.release(workspace)
            self.sandbox.prepare(workspace)
            ipc = workspace.ipc_dir(0)
            ipc.mkdir()
            env, cwd = self.sandbox.spawn(workspace)
            command = self.sandbox.command(workspace, ipc, [], check=True)
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            output, _ = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
            if process.returncode != 0:
                said = output.decode(errors="replace").strip()
                return (f"the {self.sandbox.name} sandbox failed to start "
                        f"(exit status {process.returncode}): {said}"
                        f"{self.sandbox.failure_hint(said)}")
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
