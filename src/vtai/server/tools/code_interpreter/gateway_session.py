"""A session's kernel on a Jupyter gateway (the gateway CodeSession, see backend.py): calls
over the kernel's WebSocket within the time and output limits (interrupted through the
gateway, then restarted), its /mnt/data through the kernel protocol (kernel_files.py), and a
kernel the gateway lost replaced, saying so. Its kernel id and state are in code_sessions,
so any process continues it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter import files, kernel_files
from vtai.server.tools.code_interpreter.gateway_client import (
    Channels,
    GatewayClient,
    GatewayError,
    KernelGone,
)
from vtai.server.tools.code_interpreter.kernel import (
    INTERRUPT_GRACE,
    POLL_SECONDS,
    Ending,
    Sink,
    output_of,
)
from vtai.server.tools.code_interpreter.session import LOST_ALL, LOST_STATE
from vtai.server.tools.code_interpreter.session_rows import SessionRows, SessionState

HIDDEN_SECONDS = 60.0  # for a program of ours (a file's chunk, a listing)
HIDDEN_OUTPUT = 4 * kernel_files.CHUNK_BYTES  # characters read of what one prints
LOST_KERNEL = ("Note: the kernel service no longer had this session's kernel (it was stopped "
               "or lost), so a new one was started: variables, imports and files in "
               "/mnt/data from earlier calls are gone.")


def _msg_type(msg: dict[str, Any]) -> str:
    return str(msg.get("header", {}).get("msg_type", ""))


class GatewaySession:
    def __init__(self, client: GatewayClient, rows: SessionRows,
                 settings: CodeInterpreterSettings, project: str, session_id: str,
                 kernel_id: str, state: SessionState, channels: Channels | None = None
                 ) -> None:
        self.client = client
        self.rows = rows
        self.settings = settings
        self.project = project
        self.session_id = session_id
        self.kernel_id = kernel_id
        self.state = state
        self.lock = asyncio.Lock()
        self.notice = ""  # for the first call's logs
        self.fresh = False  # its kernel was started for it and has run nothing yet
        self._after: files.Snapshot | None = None  # taken as the last call ended
        self.channels = channels
        self.last_used = time.monotonic()

    async def close(self) -> None:
        """Close the connection (the kernel stays on the gateway)."""
        if self.channels is not None:
            await self.channels.close()
            self.channels = None

    async def _connected(self) -> Channels:
        if self.channels is None or not self.channels.open:
            self.channels = await self.client.connect(self.kernel_id)
        return self.channels

    async def revive(self) -> str:
        """Connect to the session's kernel; one the gateway lost is replaced."""
        self.last_used = time.monotonic()
        notice, self.notice = self.notice, ""
        try:
            # (a WebSocket may stay open on a kernel the gateway deleted: it is asked)
            if self.channels is not None and self.channels.open and \
                    not await self.client.exists(self.kernel_id):
                raise KernelGone(self.kernel_id)
            await self._connected()
            return notice
        except KernelGone:
            pass
        await self.close()
        self.kernel_id = await self.client.start_kernel()
        self.state = SessionState()
        await self.rows.begin(self.project, self.session_id, "gateway", self.kernel_id)
        await self._connected()
        # (a kernel started ahead that the gateway lost before its first call lost nothing)
        return notice if self.fresh else LOST_KERNEL

    def interrupt(self) -> None:
        task = asyncio.ensure_future(self.client.interrupt(self.kernel_id))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def execute(self, code: str, sink: Sink) -> str:
        self.last_used = time.monotonic()
        self.fresh = False
        settings = self.settings
        ending = await self._run(code, settings.timeout, sink)
        self.last_used = time.monotonic()
        problem = {
            "timeout": f"Execution timed out after {settings.timeout:g} seconds",
            "died": f"The kernel died ({ending.detail})",
        }.get(ending.reason)
        if not ending.stopped:
            return f"{problem}; {await self._restart()}"
        notes = [f"{problem}; it was interrupted (variables are kept)."] if problem else []
        clear, self._after = kernel_files.parse_tidied(
            await self._hidden(kernel_files.tidy_and_snapshot()))
        if not clear:
            self._after = None
            notes.append("Processes started by the code could not be stopped; "
                         f"{await self._restart()}")
        return "\n".join(notes)

    async def _run(self, code: str, wall_seconds: float, sink: Sink,
                   silent: bool = False) -> Ending:
        channels = await self._connected()
        msg_id = await channels.send("shell", "execute_request", {
            "code": code, "silent": silent, "store_history": not silent,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": False})
        started = time.monotonic()
        limit: str | None = None
        grace_until = 0.0
        while True:
            try:
                msg = await channels.receive(POLL_SECONDS)
            except GatewayError as err:
                return Ending("died", False, str(err))
            now = time.monotonic()  # (checked at every message: output may never pause)
            if limit is None and now - started > wall_seconds:
                limit = "timeout"
                await self.client.interrupt(self.kernel_id)
                grace_until = now + INTERRUPT_GRACE
            elif limit is not None and now > grace_until:
                return Ending(limit, False)
            if msg is None:
                continue
            kind = _msg_type(msg)
            if kind == "status" and msg["content"].get("execution_state") in (
                    "restarting", "autorestarting", "dead"):
                return Ending("died", False, "the gateway restarted it")
            if msg.get("parent_header", {}).get("msg_id") != msg_id or \
                    msg.get("channel") != "iopub":
                continue
            if kind == "status":
                if msg["content"].get("execution_state") == "idle":
                    return Ending(limit or "ok", True)
                continue
            output = output_of(msg)
            if output is not None:
                await sink(output)

    async def _restart(self) -> str:
        """Restart the kernel through the gateway; what was lost, for the logs."""
        await self.close()
        try:
            await self.client.restart(self.kernel_id)
            await self._connected()  # (once the restarted kernel answers)
        except KernelGone:
            return "the kernel was lost; the next call starts a new one."
        if await self.snapshot():
            return LOST_STATE
        self.state.placed.clear()  # (placed again by the next call that needs them)
        return LOST_ALL

    async def _hidden(self, code: str) -> str:
        """What one of our programs printed; raises GatewayError if it failed."""
        printed: list[str] = []
        size = [0]
        failed: list[str] = []

        async def collect(output: Any) -> None:
            if output.traceback:
                failed.append(output.text[-500:])
            elif size[0] < HIDDEN_OUTPUT:
                printed.append(output.text[:HIDDEN_OUTPUT - size[0]])
                size[0] += len(printed[-1])

        ending = await self._run(code, HIDDEN_SECONDS, collect, silent=True)
        if not ending.stopped or failed:
            raise GatewayError(f"the kernel could not handle a file: {''.join(failed)}"
                               .strip())
        return "".join(printed)

    async def upload(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        first, pending = True, None
        async for chunk in chunks:
            for start in range(0, len(chunk), kernel_files.CHUNK_BYTES):
                if pending is not None:
                    await self._hidden(kernel_files.upload(name, pending, first, False))
                    first = False
                pending = base64.b64encode(
                    chunk[start:start + kernel_files.CHUNK_BYTES]).decode()
        await self._hidden(kernel_files.upload(name, pending or "", first, True))

    async def snapshot(self) -> files.Snapshot:
        after, self._after = self._after, None
        return after if after is not None else kernel_files.parse_snapshot(
            await self._hidden(kernel_files.snapshot()))

    async def read(self, relative: str, max_bytes: int) -> bytes | None:
        content = bytearray()
        while True:
            try:
                found = json.loads(await self._hidden(kernel_files.read(relative,
                                                                        len(content))))
                if found is None:
                    return None
                size, chunk = int(found["size"]), base64.b64decode(found["data"])
            except (ValueError, TypeError, KeyError):
                return None
            if size > max_bytes or len(content) + len(chunk) > max_bytes:
                raise files.TooBig(max(size, len(content) + len(chunk)))
            content += chunk
            if len(chunk) < kernel_files.CHUNK_BYTES:
                return bytes(content)

    async def save(self) -> None:
        await self.rows.save(self.session_id, self.state)
