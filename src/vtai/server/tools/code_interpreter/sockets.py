"""A rootless kernel's sockets, reached only through descriptors the server checked.

A rootless sandbox runs the kernel as the server's own uid, so the kernel could replace its
socket files (in a directory it writes) with links to any socket on the host, which the
server would then connect to. Once the kernel has made them, the server opens each socket
file without following links (O_PATH | O_NOFOLLOW below a directory opened the same way),
checks it is a socket, and connects through ``/proc/self/fd/N`` links in a directory of its
own: ZMQ's reconnections then reach the same socket, whatever the kernel does to its files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path

POLL_SECONDS = 0.01


class Pins:
    def __init__(self, directory: Path, fds: list[int]) -> None:
        self.directory = directory  # holds the links the client connects through
        self.fds = fds

    @property
    def ip(self) -> str:
        """The ``ip`` of the client's connection (ZMQ connects to ``{ip}-{port}``)."""
        return str(self.directory / "k")

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        for link in self.directory.glob("k-*"):
            with contextlib.suppress(OSError):
                link.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()


async def pin(ipc: Path, ports: list[int], directory: Path, seconds: float,
              alive: object) -> Pins:
    """Wait (up to ``seconds``, while ``alive()``) for the kernel's sockets ``ipc/k-PORT``,
    then pin them; ``directory`` is made for the links."""
    names = [f"k-{port}" for port in ports]
    deadline = time.monotonic() + seconds
    while True:
        fds = open_sockets(ipc, names)
        if fds is not None:
            break
        if time.monotonic() > deadline or not alive():  # type: ignore[operator]
            raise TimeoutError("the kernel's sockets did not appear")
        await asyncio.sleep(POLL_SECONDS)
    os.mkdir(directory, 0o700)
    for name, fd in zip(names, fds, strict=True):
        os.symlink(f"/proc/self/fd/{fd}", directory / name)
    return Pins(directory, fds)


def open_sockets(ipc: Path, names: list[str]) -> list[int] | None:
    """Descriptors of the sockets ``names`` in ``ipc``, or None until they all are there."""
    dir_fd = os.open(ipc, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    fds: list[int] = []
    try:
        for name in names:
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError:
                return None
            fds.append(fd)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                return None
        done, fds = fds, []
        return done
    finally:
        os.close(dir_fd)
        for fd in fds:
            os.close(fd)
