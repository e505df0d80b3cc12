"""Sampling the server with py-spy while a benchmark runs (`--profile`), and what it shows.

py-spy (`pip install py-spy`) records the server process's Python stacks from outside, so the
server runs unmodified. The raw collapsed stacks are kept beside the results (load them in
https://www.speedscope.app or flamegraph.pl); `summary()` gives where the CPU went by package,
by function (self time) and through the server's own code (inclusive time).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FRAME_FILE = re.compile(r"\(([^:)]*)")


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


@contextmanager
def sampled(pid: int, raw_path: Path, rate: int = 100) -> Iterator[Path | None]:
    """Record `pid`'s stacks to `raw_path` until the block ends; yields None without py-spy."""
    exe = py_spy()
    if exe is None:
        print("  (--profile: py-spy is not installed; pip install py-spy)", flush=True)
        yield None
        return
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate),
                             "--format", "raw", "--nonblocking", "-o", str(raw_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield raw_path
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not raw_path.exists():
            print(f"  (--profile: py-spy wrote nothing: {err.decode(errors='replace')[-500:]})",
                  flush=True)


def summary(raw_path: Path, top: int = 12) -> str:
    """Where the sampled CPU went: by package and by function (self), through vtai (inclusive)."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        by_function[frames[-1]] += n
        match = _FRAME_FILE.search(frames[-1])
        by_package[(match.group(1) if match else frames[-1]).split("/")[0]] += n
        for frame in set(frames):
            if "vtai/server/" in frame:
                inclusive[frame] += n
    if not total:
        return "no samples"

    def share(counter: Counter[str], limit: int) -> list[str]:
        return [f"{n / total:6.1%}  {name}" for name, n in counter.most_common(limit)]

    return "\n".join([
        f"{total} samples of the server's busy stacks",
        "self time by package:", *share(by_package, top),
        "self time by function:", *share(by_function, top),
        "inclusive time in vtai/server:", *share(inclusive, top),
    ])


def profile_summary(raw_path: Path) -> dict[str, str] | None:
    """The summary, written beside the raw stacks, and its one-line form for reports."""
    if not raw_path.exists():
        return None
    text = summary(raw_path)
    summary_path = raw_path.with_name(raw_path.stem + "-summary.txt")
    summary_path.write_text(text + "\n")
    return {"raw": str(raw_path), "summary": str(summary_path), "line": packages_line(raw_path)}


def packages_line(raw_path: Path, top: int = 6) -> str:
    """One line for a report: `sqlalchemy 36%, fastapi 21%, ...` (self time)."""
    text = summary(raw_path, top)
    lines = text.splitlines()
    if "self time by package:" not in lines:
        return text
    start = lines.index("self time by package:") + 1
    picked = []
    for line in lines[start:start + top]:
        percent, _, name = line.strip().partition("  ")
        picked.append(f"{name.strip() or '(unnamed)'} {percent}")
    return ", ".join(picked)
