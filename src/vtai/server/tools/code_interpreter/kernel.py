"""One IPython kernel process and the jupyter_client connection to it (ZMQ over unix sockets,
since a sandboxed kernel has no network), with per-call wall-clock and CPU limits."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import queue
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import write_connection_file

from vtai.server.tools.code_interpreter import procs, sockets

POLL_SECONDS = 0.1  # how often limits are checked while a call runs
INTERRUPT_GRACE = 3.0  # seconds an interrupted call gets to stop before a restart
STOP_CHECKS = 250  # every 20 ms, for a stopped kernel's processes to be gone
IMAGE_TYPES = ("image/png", "image/jpeg")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Waits for the kernel's dead children: a process limit counts zombies.
_REAP = """import os as _os
try:
    while _os.waitpid(-1, _os.WNOHANG)[0]:
        pass
except ChildProcessError:
    pass
del _os"""
KERNEL_ARGS = ["--HistoryManager.enabled=False"]  # no history database in the workspace


class KernelStartError(Exception):
    pass


@dataclass
class Output:
    """Something the code printed, returned or displayed."""

    text: str = ""
    image: tuple[str, bytes] | None = None  # (media type, bytes)
    traceback: bool = False


@dataclass
class Ending:
    reason: str  # "ok", "timeout", "cpu" or "died"
    stopped: bool  # the kernel is idle again (so it keeps its state)
    detail: str = ""


Sink = Callable[[Output], Awaitable[None]]


def write_connection(ipc: Path, uid: int | None) -> Path:
    """A connection file for a kernel whose sockets live in ``ipc``."""
    path, _ = write_connection_file(str(ipc / "kernel.json"), transport="ipc",
                                    ip=str(ipc / "k"), key=secrets.token_hex(32).encode())
    if uid is not None:
        os.chown(path, uid, uid)
    return Path(path)


def _text(data: dict[str, Any]) -> str:
    value = data.get("text/plain", "")
    return (value if isinstance(value, str) else "".join(value)) + "\n"


def output_of(msg: dict[str, Any]) -> Output | None:
    kind, content = msg["header"]["msg_type"], msg["content"]
    if kind == "stream":
        return Output(text=content["text"])
    if kind in ("execute_result", "display_data"):
        data = content["data"]
        for media in IMAGE_TYPES:
            if media in data:
                return Output(image=(media, base64.b64decode(data[media])))
        return Output(text=_text(data)) if "text/plain" in data else None
    if kind == "error":
        return Output(text=_ANSI.sub("", "\n".join(content["traceback"])) + "\n",
                      traceback=True)
    return None


class Kernel:
    def __init__(self, process: asyncio.subprocess.Process, client: AsyncKernelClient,
                 own: list[int], pins: sockets.Pins | None = None) -> None:
        self.process = process
        self.client = client
        self.own = set(own)  # the processes of the kernel: bwrap's, then the kernel itself
        self.pid = own[-1]
        self.pins = pins
        self._cpu_after_call = procs.cpu_seconds(self.pid)

    @classmethod
    async def start(cls, command: list[str], env: dict[str, str], cwd: Path, log: Path,
                    connection: Path, start_seconds: float, pin: bool = False) -> Kernel:
        """Start the kernel; with ``pin``, connect to its sockets only through descriptors
        checked once it made them (sockets.py)."""
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        client = AsyncKernelClient(connection_file=str(connection))
        client.load_connection_file()
        pins = None
        try:
            if pin:
                ports = [client.shell_port, client.iopub_port, client.stdin_port,
                         client.control_port, client.hb_port]
                pins = await sockets.pin(connection.parent, ports,
                                         connection.parent.with_name(
                                             connection.parent.name + "-pins"),
                                         start_seconds, lambda: process.returncode is None)
                client.ip = pins.ip
            client.start_channels()
            await _wait_ready(client, process, start_seconds)
        except BaseException as err:
            await _kill(process)
            client.stop_channels()
            if pins is not None:
                pins.close()
            tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:]
            if isinstance(err, KernelStartError | TimeoutError):
                raise KernelStartError(f"{err}\n{tail}".strip()) from None
            raise
        return cls(process, client, procs.chain(process.pid), pins)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def execute(self, code: str, wall_seconds: float, cpu_seconds: float,
                      sink: Sink, silent: bool = False) -> Ending:
        """Run ``code``, passing what it outputs to ``sink`` as it comes."""
        started = time.monotonic()
        cpu_start = procs.cpu_seconds(self.pid)
        msg_id = self.client.execute(code, silent=silent, store_history=not silent,
                                     allow_stdin=False, stop_on_error=False)
        limit: str | None = None
        grace_until = 0.0
        while True:
            try:
                msg = await self.client.get_iopub_msg(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self.alive:
                    return Ending("died", False, f"exit status {self.process.returncode}")
                now = time.monotonic()
                if limit is None:
                    if now - started > wall_seconds:
                        limit = "timeout"
                    elif procs.cpu_seconds(self.pid) - cpu_start > cpu_seconds:
                        limit = "cpu"
                    if limit is not None:
                        self.interrupt()
                        grace_until = now + INTERRUPT_GRACE
                elif now > grace_until:
                    return Ending(limit, False)
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # a late message of an earlier, interrupted call
            if msg["header"]["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
                continue
            output = output_of(msg)
            if output is not None:
                await sink(output)
        await self._drain_reply(msg_id)
        self._cpu_after_call = procs.cpu_seconds(self.pid)
        return Ending(limit or "ok", True)

    def idle_cpu_seconds(self) -> float:
        """CPU time used since the last call ended: threads the code left running."""
        return procs.cpu_seconds(self.pid) - self._cpu_after_call

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)

    async def tidy(self) -> bool:
        """Kill the processes the code started and left behind, and have the kernel wait
        for its dead children; False if that failed (a fork bomb outrunning the kills), so
        the kernel must be restarted."""
        deadline = time.monotonic() + procs.TIDY_SECONDS
        while True:
            live, zombies = procs.strays(self.process.pid, self.own)
            if not live:
                break
            if time.monotonic() > deadline:
                return False
            procs.kill(live)
            await asyncio.sleep(0.02)  # SIGKILL takes effect asynchronously
        if zombies:
            await self.execute(_REAP, 5, 5, _ignore, silent=True)
            live, zombies = procs.strays(self.process.pid, self.own)
        return not live and not zombies

    async def stop(self) -> None:
        await _kill(self.process)
        self.client.stop_channels()
        if self.pins is not None:
            self.pins.close()
        # bwrap is gone, but its pid namespace is torn down after it; until then the old
        # processes count against the uid's process limit, which a new kernel shares.
        for _ in range(STOP_CHECKS):
            if not any(procs.running(pid) for pid in self.own):
                return
            await asyncio.sleep(0.02)

    async def _drain_reply(self, msg_id: str) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                reply = await self.client.get_shell_msg(timeout=deadline - time.monotonic())
            except queue.Empty:
                return
            if reply["parent_header"].get("msg_id") == msg_id:
                return


async def _ignore(_output: Output) -> None:
    pass


async def _wait_ready(client: AsyncKernelClient, process: asyncio.subprocess.Process,
                      seconds: float) -> None:
    """Until the kernel answers on the shell channel and its IOPub messages reach us (a
    subscription takes a moment to settle)."""
    deadline = time.monotonic() + seconds
    answered = False
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise KernelStartError(f"the kernel exited with status {process.returncode}")
        if not answered:
            client.kernel_info()
            try:
                reply = await client.get_shell_msg(timeout=0.25)
            except queue.Empty:
                continue
            answered = reply["header"]["msg_type"] == "kernel_info_reply"
            continue
        try:
            await client.get_iopub_msg(timeout=0.25)
            return
        except queue.Empty:
            answered = False  # ask again: the answer's IOPub status went before we listened
    raise KernelStartError(f"the kernel did not start within {seconds:g} seconds")


async def _kill(process: asyncio.subprocess.Process) -> None:
    # The process group: the kernel's own (unsandboxed) or bwrap's, whose death takes the
    # whole sandbox down with it (--die-with-parent, and a pid namespace losing its init).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
