"""A remote kernel's /mnt/data, through the kernel protocol only (no shared disk): small
programs run silently in the kernel, each in a namespace of its own, that write a file from
base64 chunks, list the files with their modification times and sizes, or read a chunk of
one. What they print is bounded by the caller (``run_hidden``)."""

from __future__ import annotations

import json
from typing import Any

from vtai.server.tools.code_interpreter.files import MAX_DEPTH, MAX_ENTRIES
from vtai.server.tools.code_interpreter.procs import TIDY_SECONDS

CHUNK_BYTES = 1024 * 1024  # of a file, per message: its base64 stays within a WebSocket frame

_RUN = "__import__('builtins').exec({source!r}, {{'ARGS': {args!r}}})"

_UPLOAD = """
import base64, os
name, data, first, last = ARGS
part = '/mnt/data/.vtai-upload'
with open(part, 'wb' if first else 'ab') as out:
    out.write(base64.b64decode(data))
if last:
    os.replace(part, os.path.join('/mnt/data', name))
"""

_SNAPSHOT = """
import json, os, stat
found, budget = {}, [ARGS[0]]
def walk(path, prefix, depth):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        budget[0] -= 1
        if budget[0] < 0:
            return
        if name.startswith('.'):
            continue
        full = os.path.join(path, name)
        try:
            info = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            found[prefix + name] = [info.st_mtime_ns, info.st_size]
        elif stat.S_ISDIR(info.st_mode) and depth < ARGS[1]:
            walk(full, prefix + name + '/', depth + 1)
walk('/mnt/data', '', 0)
"""

_READ = """
import base64, json, os, stat
relative, offset, count = ARGS
try:
    fd = os.open(os.path.join('/mnt/data', relative), os.O_RDONLY | os.O_NONBLOCK)
except OSError:
    print('null')
else:
    with os.fdopen(fd, 'rb') as source:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            print('null')
        else:
            source.seek(offset)
            data = source.read(count)
            print(json.dumps({'size': info.st_size, 'data': base64.b64encode(data).decode()}))
"""


# Processes the code started and left running are killed after each call, as local kernels'
# are (they would hold the process limit), but only in a sandbox of ours: there the kernel is
# the child of the pid namespace's init (bwrap's), and kill(-1) reaches that namespace only.
# A fork bomb can outrun one kill, and the killed count against the limit until they are
# reaped, so this repeats until the namespace holds only its init and the kernel (or a
# deadline passes: ``clear`` says whether it does, else the kernel is restarted).
_TIDY = f"tidy_seconds = {TIDY_SECONDS!r}\n" + """
import os, signal, time
try:
    with open('/proc/1/cmdline', 'rb') as init:
        command = os.path.basename(init.read().split(b'\\0', 1)[0])
    sandboxed = os.getppid() == 1 and command == b'bwrap'
except OSError:
    sandboxed = False
clear = True
if sandboxed:
    kernel, deadline = os.getpid(), time.monotonic() + tidy_seconds
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        clear = not [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, kernel)]
        if clear or time.monotonic() > deadline:
            break
        time.sleep(0.005)
"""


def program(source: str, args: Any) -> str:
    return _RUN.format(source=source, args=args)


def upload(name: str, data: str, first: bool, last: bool) -> str:
    """Write base64 ``data`` as (the next part of) /mnt/data/``name``."""
    return program(_UPLOAD, (name, data, first, last))


def snapshot() -> str:
    """Prints the files below /mnt/data as JSON: path -> [mtime_ns, size]."""
    return program(_SNAPSHOT + "print(json.dumps(found))", (MAX_ENTRIES, MAX_DEPTH))


def read(relative: str, offset: int) -> str:
    """Prints a chunk of /mnt/data/``relative`` as JSON {size, data (base64)}, or null."""
    return program(_READ, (relative, offset, CHUNK_BYTES))


def tidy_and_snapshot() -> str:
    """Tidies (see _TIDY), then prints JSON {clear: whether only the kernel is left, files:
    what ``snapshot`` prints}: one round trip after a call instead of two."""
    return program(_TIDY + _SNAPSHOT + "print(json.dumps({'clear': clear, 'files': found}))",
                   (MAX_ENTRIES, MAX_DEPTH))


def parse_snapshot(text: str) -> dict[str, tuple[int, int]]:
    """The snapshot ``snapshot`` printed; empty if it is unreadable (what the code did to its
    kernel's modules): no written files to copy out."""
    try:
        return _files(json.loads(text))
    except (ValueError, TypeError, AttributeError, IndexError):
        return {}


def parse_tidied(text: str) -> tuple[bool, dict[str, tuple[int, int]]]:
    """Whether ``tidy_and_snapshot`` left only the kernel, and its snapshot; an unreadable
    answer is taken as clear, with no files (as in parse_snapshot)."""
    try:
        found = json.loads(text)
        return found["clear"] is not False, _files(found["files"])
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return True, {}


def _files(found: Any) -> dict[str, tuple[int, int]]:
    return {str(path): (int(seen[0]), int(seen[1])) for path, seen in found.items()}
