"""What every benchmark needs: processes (the fake model, `vtai serve`), databases, stats.

The server and the fake model each run in their own process so none of them shares a GIL with
the load generator; both are started under a raised open-files limit, since a thousand held
streams need two thousand sockets in the server (one to the client, one to the model).
"""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests import support
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("VTAI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
NOFILE = 20_000
# The server's code from another checkout (before/after comparisons): VTAI_BENCH_SERVER_PATH,
# a PYTHONPATH-style list put first on the server's path (e.g. `/tmp/wt-before/src`). The
# load generator and the fake model stay on this tree's code.
SERVER_PATH = os.environ.get("VTAI_BENCH_SERVER_PATH", "")
_TICKS = os.sysconf("SC_CLK_TCK")


def raise_nofile(wanted: int = NOFILE) -> int:
    """Raise this process's open-files limit as far as the hard limit allows; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, interrupts, total) CPU ticks of the whole machine so far, all cores (/proc/stat).

    Interrupt time (irq + softirq: much of loopback TCP's work) is busy time no process's
    own counters include.
    """
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, values[5] + values[6], sum(values)


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds used so far) for every process on the machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


class CpuMeter:
    """Where the machine's CPU went during a measurement.

    `stop()` gives cores used on average (1.0 = one core busy the whole time) by each named
    process, by PostgreSQL's processes, by the load generator (this process), by interrupts
    (`irq`, mostly loopback networking), and `rest`: the machine's busy time not accounted
    for by those (other processes; `top_other` names the busiest). `machine` is the share of
    all cores that was busy.
    """

    def __init__(self, **pids: int) -> None:
        self.pids = {**pids, "client": os.getpid()}
        self._start = 0.0
        self._procs: dict[int, tuple[str, float]] = {}
        self._ticks = (0, 0, 0)
        self.top_other: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._procs, self._ticks = _cpu_by_process(), _machine_ticks()
        self._start = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._start
        procs, ticks = _cpu_by_process(), _machine_ticks()
        by_pid = {pid: role for role, pid in self.pids.items()}
        used = dict.fromkeys([*self.pids, "postgres"], 0.0)
        others: dict[str, float] = {}
        for pid, (name, seconds) in procs.items():
            spent = seconds - self._procs.get(pid, (name, 0.0))[1]
            role = by_pid.get(pid) or ("postgres" if name.startswith("postgres") else None)
            if role is not None:
                used[role] += spent
            elif spent > 0:
                others[name] = others.get(name, 0.0) + spent
        self.top_other = {name: round(seconds / wall, 3) for name, seconds in
                          sorted(others.items(), key=lambda item: -item[1])[:5]}
        cores = os.cpu_count() or 1
        busy, irq, total = (after - before for after, before in zip(ticks, self._ticks,
                                                                     strict=True))
        machine = busy / total if total else 0.0
        result = {role: seconds / wall for role, seconds in used.items()}
        result["irq"] = irq / total * cores if total else 0.0
        result["rest"] = max(machine * cores - sum(result.values()), 0.0)
        result["machine"] = machine
        return result


QUIET = {"max_wait": 0.0}  # set from --wait-quiet


def _settle() -> None:
    """Before a measurement: write what earlier phases left in the page cache to the disk
    now (the kernel would do it within 30 s, in the middle of this one), and wait for the
    machine to be quiet if --wait-quiet asks to."""
    os.sync()
    if QUIET["max_wait"] > 0:
        waited = wait_for_quiet(QUIET["max_wait"])
        if waited > 1.5:
            print(f"    (waited {waited:.0f} s for other work on the machine to stop)",
                  flush=True)


@contextmanager
def measuring() -> Iterator[None]:
    """Around a measured phase: the machine settled first (`_settle`), and the load
    generator's garbage collector off while it measures, as `timeit` does: a full collection
    of its heap takes 50-100 ms here, which every stream it reads would wait out, on either
    path, a p99 of noise."""
    _settle()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def wait_for_quiet(max_wait: float, busy_below: float = 0.1) -> float:
    """Wait (up to `max_wait` s) for a second in which the machine is less than `busy_below`
    busy, so other work on a shared machine skews the next row less. Returns the seconds
    waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        before = _machine_ticks()
        time.sleep(1.0)
        after = _machine_ticks()
        total = after[2] - before[2]
        if total and (after[0] - before[0]) / total < busy_below:
            break
    return time.monotonic() - start


class Process:
    """A child process with its output in a log file, started under a raised ulimit -n."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, health_url: str, timeout: float = 60.0) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = f"ulimit -n {NOFILE} 2>/dev/null || true; exec {shlex.join(self.argv)}"
        with self.log_path.open("ab") as log:
            # exec keeps the pid, so cpu_seconds(self.pid) measures the Python process itself.
            self.proc = subprocess.Popen(["bash", "-c", command], env=self.env, cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; log {self.log_path}:\n"
                                   f"{self.log()[-3000:]}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not start; log {self.log_path}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Pacing:
    """How the fake model answers one model name: a delay, then `chunks` words paced apart."""

    first_token_delay: float
    chunks: int
    chunk_delay: float

    @property
    def model_seconds(self) -> float:
        return self.first_token_delay + (self.chunks - 1) * self.chunk_delay


@dataclass
class FakeModel:
    base_url: str  # http://127.0.0.1:PORT/v1
    process: Process


@contextmanager
def fake_model(out: Path, pacing: dict[str, Pacing]) -> Iterator[FakeModel]:
    """The fake model in its own process, answering each model name with its pacing."""
    port = free_port()
    spec = json.dumps({name: p.__dict__ for name, p in pacing.items()})
    proc = Process("fake model", [sys.executable, "-m", "bench.fake_upstream", "--port",
                                  str(port), "--pacing", spec], out / f"fake-model-{port}.log")
    proc.start(f"http://127.0.0.1:{port}/v1/models")
    try:
        yield FakeModel(f"http://127.0.0.1:{port}/v1", proc)
    finally:
        proc.stop()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    with support.postgres_database(PG_ADMIN_DSN, "vtai_bench") as url:
        yield url


@dataclass
class Server:
    base_url: str  # http://127.0.0.1:PORT/v1
    process: Process

    def problems(self) -> list[str]:
        """Log lines that show the server misbehaving (errors, tracebacks, warnings)."""
        return [line for line in self.process.log().splitlines()
                if re.search(r"\b(ERROR|CRITICAL|Traceback|Exception)\b", line)
                or (" WARNING " in line and "no API keys configured" not in line)]


@contextmanager
def vtai_server(out: Path, backend: str, upstream: FakeModel) -> Iterator[Server]:
    """`vtai serve` on a fresh SQLite directory or PostgreSQL database."""
    port = free_port()
    data_dir = out / f"data-{backend}-{port}"
    env = {"VTAI_UPSTREAM_BASE_URL": upstream.base_url, "VTAI_UPSTREAM_API_KEY": "fake",
           "VTAI_OLLAMA_PROBE": "false", "VTAI_LOG_LEVEL": "info"}
    if SERVER_PATH:
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (SERVER_PATH, os.environ.get("PYTHONPATH", "")) if part)
    with _database(backend) as url:
        if url:
            env["VTAI_DATABASE_URL"] = url
        argv = [sys.executable, "-m", "vtai.cli", "serve", "--port", str(port),
                "--data-dir", str(data_dir)]
        proc = Process(f"vtai serve ({backend})", argv, out / f"server-{backend}-{port}.log",
                       env)
        proc.start(f"http://127.0.0.1:{port}/healthz")
        try:
            yield Server(f"http://127.0.0.1:{port}/v1", proc)
        finally:
            proc.stop()


@contextmanager
def _database(backend: str) -> Iterator[str | None]:
    if backend == "postgres":
        with postgres_database() as url:
            yield url
    elif backend == "sqlite":
        yield None
    else:
        raise ValueError(f"unknown backend {backend!r}")


def run_dir(base: Path | None = None) -> Path:
    """A fresh directory for this run's logs and data, under /tmp by default."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (base or Path("/tmp/vtai-bench")) / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------- stats


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99, mean and max of samples in seconds, given back in milliseconds."""
    if not samples:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "mean": float("nan"),
                "max": float("nan")}
    ordered = sorted(samples)
    if len(ordered) == 1:
        p50 = p99 = ordered[0]
    else:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    return {"n": len(ordered), "p50": p50 * 1000, "p99": p99 * 1000,
            "mean": statistics.fmean(ordered) * 1000, "max": ordered[-1] * 1000}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (it reads fine in a terminal too)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in cells]
    return "\n".join(lines)


def cpu_cell(cpu: dict[str, float], *roles: str) -> str:
    """Cores used by each role, then the machine's busy share: `0.98/0.07/0.00/0.02 (54%)`."""
    used = "/".join(f"{cpu.get(role, 0.0):.2f}" for role in roles)
    return f"{used} ({cpu.get('machine', 0.0):.0%})"


def others_note(rows: list[tuple[str, dict[str, float], dict[str, float]]],
                threshold: float = 0.15) -> str:
    """A warning naming the rows during which other processes took CPU from the benchmark.

    `rows` holds (label, cpu, other_processes) per row.
    """
    busy = []
    for label, cpu, others in rows:
        if cpu.get("rest", 0.0) >= threshold:
            names = ", ".join(f"{name} {cores:.2f}" for name, cores in others.items()
                              if cores >= 0.02)
            busy.append(f"{label}: {cpu['rest']:.2f} cores ({names})")
    if not busy:
        return ""
    return ("\n\nOther processes on the machine used CPU during some rows, which lowers "
            "those rows' numbers: " + "; ".join(busy) + ".")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)
