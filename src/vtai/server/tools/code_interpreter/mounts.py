"""Size-limited tmpfs mounts for session directories, through libc (Linux, root only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")  # mountinfo writes " " as \040

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_tmpfs(target: Path, size_bytes: int) -> None:
    options = f"size={size_bytes},mode=0755".encode()
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                   options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting a tmpfs on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    # Detached: a process still holding a file open there cannot keep the mount busy.
    if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unmounting {target}: {os.strerror(err)}")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)
