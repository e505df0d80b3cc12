"""Kernels on a Jupyter Kernel Gateway or Enterprise Gateway (VTAI_CODE_BACKEND=gateway): the
CodeSessions of a process. A session's kernel id is read from code_sessions at every call, so
any process on any host continues the kernel another one used (a change of worker, a worker's
restart); new sessions take a kernel started ahead (the pool); kernels unused for
VTAI_CODE_IDLE_SECONDS are deleted by whichever process sees it first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from vtai.server import ids
from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.backend import Unavailable
from vtai.server.tools.code_interpreter.gateway_client import (
    Channels,
    GatewayClient,
    GatewayError,
)
from vtai.server.tools.code_interpreter.gateway_session import GatewaySession
from vtai.server.tools.code_interpreter.session_rows import (
    SessionRows,
    SessionState,
    reset_note,
)

log = logging.getLogger("vtai.tools.code_interpreter")

REAP_SECONDS = 10.0  # how often idle kernels are looked for
FILL_RETRY_SECONDS = 30.0


class GatewayPool:
    def __init__(self, settings: CodeInterpreterSettings, rows: SessionRows) -> None:
        self.settings = settings
        self.rows = rows
        self.client = GatewayClient(settings.gateway_url or "", settings.gateway_token,
                                    settings.gateway_kernel, settings.gateway_request_timeout)
        self.sessions: OrderedDict[str, GatewaySession] = OrderedDict()  # connected, LRU
        # kernels started ahead for new sessions, answering on their channels
        self.ready: list[tuple[str, Channels]] = []
        self.unavailable: str | None = "the code interpreter has not started"
        self._tasks: list[asyncio.Task[None]] = []
        self._filling: asyncio.Task[None] | None = None
        self._fill_failed_at = -FILL_RETRY_SECONDS

    async def start(self) -> None:
        if not self.settings.gateway_url:
            self.unavailable = ("VTAI_CODE_BACKEND=gateway needs VTAI_CODE_GATEWAY_URL (and "
                                "VTAI_CODE_GATEWAY_TOKEN if the gateway has one)")
            log.error("code interpreter unavailable: %s", self.unavailable)
            return
        self.unavailable = None
        log.info("code interpreter: kernels on the Jupyter gateway at %s (kernelspec %s, "
                 "%d s per call), pool of %d; isolation is the gateway's",
                 self.settings.gateway_url, self.settings.gateway_kernel,
                 self.settings.timeout, self.settings.pool_size)
        self._tasks.append(asyncio.create_task(self._reap()))
        self._fill()

    async def stop(self) -> None:
        for task in [*self._tasks, self._filling]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        # Kernels started ahead belong to no session: they go. Sessions' kernels stay, for
        # whichever process runs their next call.
        ready, self.ready = self.ready, []
        await asyncio.gather(*(c.close() for _, c in ready), return_exceptions=True)
        await asyncio.gather(*(self.client.delete(k) for k, _ in ready),
                             return_exceptions=True)
        await self.client.close()

    async def session(self, project: str, session_id: str) -> GatewaySession:
        if self.unavailable:
            raise Unavailable(self.unavailable)
        row = await self.rows.get(project, session_id)
        cached = self.sessions.get(session_id)
        if row is not None and row.backend == "gateway" and row.kernel_id is not None:
            if cached is not None and cached.kernel_id == row.kernel_id:
                cached.state = row.state  # (another process may have called it since)
                self.sessions.move_to_end(session_id)
                return cached
            session = GatewaySession(self.client, self.rows, self.settings, project,
                                     session_id, row.kernel_id, row.state)
        else:
            kernel_id, channels = await self._kernel()
            await self.rows.begin(project, session_id, "gateway", kernel_id)
            session = GatewaySession(self.client, self.rows, self.settings, project,
                                     session_id, kernel_id, SessionState(), channels)
            session.notice = reset_note(row)
            session.fresh = True
        if cached is not None:
            if cached.lock.locked():  # (a call under way on the old kernel)
                return cached
            await cached.close()
        self.sessions[session_id] = session
        await self._trim()
        return session

    async def _kernel(self) -> tuple[str, Channels | None]:
        """A kernel for a new session: started ahead (with its channels), or now."""
        found = self.ready.pop(0) if self.ready else None
        self._fill()
        return found or (await self.client.start_kernel(), None)

    async def _trim(self) -> None:
        """Past max_sessions, the least recently used idle connections are closed (their
        kernels stay on the gateway)."""
        while len(self.sessions) > self.settings.max_sessions:
            idle = next((sid for sid, s in self.sessions.items() if not s.lock.locked()),
                        None)
            if idle is None:
                return
            await self.sessions.pop(idle).close()

    def _fill(self) -> None:
        missing = self.settings.pool_size - len(self.ready)
        if missing <= 0 or (self._filling is not None and not self._filling.done()):
            return
        if asyncio.get_running_loop().time() - self._fill_failed_at < FILL_RETRY_SECONDS:
            return
        self._filling = asyncio.create_task(self._fill_up())

    async def _fill_up(self) -> None:
        while len(self.ready) < self.settings.pool_size:
            try:
                kernel_id = await self.client.start_kernel()
                try:
                    channels = await self.client.connect(kernel_id)
                except GatewayError:
                    await self.client.delete(kernel_id)
                    raise
                self.ready.append((kernel_id, channels))
            except GatewayError as err:
                log.warning("code interpreter: the gateway did not start a kernel: %s", err)
                self._fill_failed_at = asyncio.get_running_loop().time()
                return

    async def _reap(self) -> None:
        """Delete the kernels of sessions unused for idle_seconds (any process may)."""
        while True:
            await asyncio.sleep(REAP_SECONDS)
            try:
                before = ids.now() - int(self.settings.idle_seconds)
                for row in await self.rows.idle("gateway", before):
                    assert row.kernel_id is not None
                    log.info("code interpreter: stopping the idle session of %s",
                             row.session_id)
                    await self.rows.end([row.session_id], "was stopped after "
                                        f"{self.settings.idle_seconds:g} seconds without a "
                                        "call", kernel_id=row.kernel_id)
                    cached = self.sessions.pop(row.session_id, None)
                    if cached is not None:
                        await cached.close()
                    await self.client.delete(row.kernel_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("code interpreter: looking for idle gateway kernels failed")
