"""Files in a session's data directory, handled by the server (root) in a directory that
model-written code controls: no path is followed through a symbolic link the code may have
put there, every step goes through directory descriptors opened with O_NOFOLLOW."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

MAX_DEPTH = 8  # directory levels scanned for written files
MAX_ENTRIES = 10_000  # entries scanned for written files

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

Snapshot = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)


def safe_name(filename: str, fallback: str) -> str:
    """A file name without directories, for a client-given filename."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
    return fallback if name in ("", ".", "..") else name


@contextlib.contextmanager
def _directory(root: Path, parts: tuple[str, ...] = ()) -> Iterator[int]:
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def create(root: Path, name: str, uid: int | None) -> int:
    """A new, empty file ``name`` in ``root`` (replacing what is there), owned by ``uid``:
    its descriptor, open for writing."""
    with _directory(root) as dir_fd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                     dir_fd=dir_fd)
    if uid is not None:
        os.fchown(fd, uid, uid)
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def snapshot(root: Path) -> Snapshot:
    """Regular files below ``root`` (not hidden ones), with their modification time and
    size, to tell afterwards which ones a call wrote."""
    found: Snapshot = {}
    budget = [MAX_ENTRIES]

    def walk(dir_fd: int, prefix: str, depth: int) -> None:
        for name in os.listdir(dir_fd):
            budget[0] -= 1
            if budget[0] < 0:
                return
            if name.startswith("."):
                continue
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                found[prefix + name] = (info.st_mtime_ns, info.st_size)
            elif stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
                with contextlib.suppress(OSError):
                    inner = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        walk(inner, f"{prefix}{name}/", depth + 1)
                    finally:
                        os.close(inner)

    with contextlib.suppress(FileNotFoundError), _directory(root) as fd:
        walk(fd, "", 0)
    return found


def written(before: Snapshot, after: Snapshot) -> list[str]:
    """Files new or changed between two snapshots, oldest change first."""
    changed = [path for path, seen in after.items() if before.get(path) != seen]
    return sorted(changed, key=lambda path: after[path][0])


class TooBig(Exception):
    """A file over the size it may have to be read."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def read(root: Path, relative: str, max_bytes: int) -> bytes | None:
    """A regular file below ``root``, or None if it is not one (any more); raises TooBig,
    without reading it, if it has more than ``max_bytes``."""
    *parts, name = PurePosixPath(relative).parts
    try:
        with _directory(root, tuple(parts)) as dir_fd:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as src:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    return None
                if info.st_size > max_bytes:
                    raise TooBig(info.st_size)
                # A thread the code left running may still be writing to it.
                content = src.read(max_bytes + 1)
                if len(content) > max_bytes:
                    raise TooBig(max(len(content), os.fstat(fd).st_size))
                return content
    except OSError:
        return None
