"""A kernel's processes as /proc shows them: their CPU time, and the ones code left behind."""

from __future__ import annotations

import contextlib
import os
import signal

TIDY_SECONDS = 2.0  # to kill what code left running after a call, before restarting instead
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, its threads and its children it waited for."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of stat(5), counted from "state" at 0
    return sum(int(v) for v in fields[11:15]) / _TICKS


def _children() -> tuple[dict[int, list[int]], set[int]]:
    """Each process's children, and the zombies."""
    children: dict[int, list[int]] = {}
    zombies: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
            if fields[0] in (b"Z", b"X"):
                zombies.add(int(name))
    return children, zombies


def strays(root: int, own: set[int]) -> tuple[set[int], set[int]]:
    """The processes below ``root`` other than ``own``: the live ones, and the zombies
    (which still count against the process limit until their parent waits for them)."""
    children, zombies = _children()
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    found -= own
    return found - zombies, found & zombies


def chain(root: int) -> list[int]:
    """``root``, its only child, that one's only child, and so on: a freshly started
    kernel's processes (bwrap, the sandbox's pid 1, the kernel)."""
    children, _ = _children()
    found = [root]
    while len(children.get(found[-1], ())) == 1:
        found.append(children[found[-1]][0])
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
