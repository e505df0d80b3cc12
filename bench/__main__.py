"""Run the benchmarks: `python -m bench [all|messages|runs|responses] [--quick] [--backend ...]`
(`messages --rate-limit`: the rate limiter's overhead; `responses`: the Responses API beside
llama-stack, not part of `all`).

Every run writes its logs (server, fake model), `results.json` and `results.md` to a fresh
directory under /tmp/vtai-bench; `--write-docs` also puts the tables into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import messages, responses, run_clients, runs, runs_report
from bench.harness import (
    PG_ADMIN_DSN,
    QUIET,
    ROOT,
    SERVER_PATH,
    Pacing,
    raise_nofile,
    run_dir,
)

DOCS = ROOT / "docs" / "benchmarks.md"
RATE_LIMIT_TURNS = 4  # per limiter setting: off, on, on, off, off, on, on, off


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="VT.ai Assistants benchmarks (see docs/benchmarks.md)")
    parser.add_argument("which", nargs="?", choices=["all", "messages", "runs", "responses"],
                        default="all", help="which benchmark to run (default: all: messages "
                        "and runs)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs: 3 s per messages row, fewer runs, 200 held streams")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--write-docs", action="store_true",
                        help="put the results into docs/benchmarks.md")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement, wait up to SECONDS for the machine to "
                             "be idle (for shared machines)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy during each benchmark")
    parser.add_argument("--out", type=Path, default=None,
                        help="where logs and results go (default: /tmp/vtai-bench/<time>)")
    group = parser.add_argument_group("messages")
    group.add_argument("--seconds", type=float, help="seconds per row (default 10, quick 3)")
    group.add_argument("--clients", type=_ints, default=None,
                       help="concurrent clients, comma-separated (default 1,16,64; "
                            "16 with --rate-limit)")
    group.add_argument("--client", choices=["raw", "httpx", "sdk"], default="raw",
                       help="bench.rawhttp (default, least client CPU), httpx or the openai SDK")
    group.add_argument("--rate-limit", action="store_true",
                       help="instead of the usual rows: each row on two servers, the per-key "
                            "rate limiter off and on (at a limit never reached), measured "
                            f"in {RATE_LIMIT_TURNS} alternating turns each")
    group = parser.add_argument_group("runs")
    group.add_argument("--concurrency", type=_ints, default=[1, 50, 200],
                       help="concurrent runs, comma-separated (default 1,50,200)")
    group.add_argument("--samples", type=int,
                       help="measured runs per path at each level above 1 (default 1000, quick "
                            "100; by default a steady phase stops at 24 runs per worker)")
    group.add_argument("--serial-samples", type=int,
                       help="runs per path at concurrency 1 (default 30, quick 10)")
    group.add_argument("--shape", choices=["burst", "steady", "both"], default="both",
                       help="burst: short answers, all runs started at once; steady: a served "
                            "model's pace, runs started spread out (default both)")
    group.add_argument("--runs-client", choices=["probes", "sdk", "httpx", "raw"],
                       default="probes",
                       help="overhead test client: probes (default: one worker in 4 on the "
                       "openai SDK, measured; the others load the server over raw SSE), sdk "
                       "(every worker on the SDK), SSE read with httpx, or SSE bytes scanned "
                       "on bench.rawhttp (least client CPU)")
    group.add_argument("--api", choices=["assistants", "responses"], default="assistants",
                       help="what the overhead test streams from our server: a run "
                            "(runs.stream) or a response (responses.create(stream=True)); "
                            "held streams are runs either way")
    group.add_argument("--hold", type=int,
                       help="streaming runs held open at once (default 1000, quick 200; 0: skip)")
    group.add_argument("--hold-seconds", type=float,
                       help="model time of a held run, s (default 8.6, quick 4.8)")
    responses.add_arguments(parser)
    return parser.parse_args(argv)


STEADY_MAX_RUNS = 24  # runs per worker in a steady phase by default (~2.4 s each)


def run_levels(args: argparse.Namespace) -> dict[str, dict[int, int]]:
    """For each shape measured: concurrency -> runs per worker."""
    # A p99 is about the 10th-worst of 1000 runs; of 400 it was the 4th, and then whether a
    # handful of runs met one of the machine's own pauses (seen on the direct path too) moved it
    # by 10-30 ms from one invocation to the next.
    samples = args.samples or (100 if args.quick else 1000)
    serial = args.serial_samples or (10 if args.quick else 30)

    def timed(concurrency: int) -> int:  # workers whose runs are measured
        return run_clients.measured_workers(args.runs_client, concurrency)

    levels = {}
    if args.shape in ("burst", "both"):
        levels["burst"] = {c: serial if c == 1 else max(2, math.ceil(samples / timed(c)))
                           for c in args.concurrency}
    if args.shape in ("steady", "both"):
        # Each worker's first and last runs are not measured; runs are seconds long here.
        steady = {}
        for c in args.concurrency:
            if c == 1:
                steady[c] = 4 if args.quick else 8
                continue
            steady[c] = max(4, 2 + math.ceil(samples / timed(c)))
            if args.samples is None and not args.quick:  # a minute of runs at most
                steady[c] = min(steady[c], STEADY_MAX_RUNS)
        levels["steady"] = steady
    return levels


def hold_pacing(args: argparse.Namespace) -> Pacing:
    """One second to the first word, then 20 words spread over the rest of the model time."""
    seconds = args.hold_seconds or (4.8 if args.quick else 8.6)
    return Pacing(first_token_delay=1.0, chunks=20, chunk_delay=max(seconds - 1.0, 0.0) / 19)


def environment(argv: list[str]) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": _postgres_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "command": "python -m bench " + shlex.join(argv),
        "server_path": SERVER_PATH,
    }


def _postgres_version() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]).split()[0] if row else "?"
    except Exception:
        return "unreachable"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe(env: dict[str, Any]) -> str:
    commit = env["commit"] + (" + uncommitted changes" if env["dirty"] else "")
    if env.get("server_path"):
        commit += f" (the server's code from {env['server_path']})"
    return (f"Measured {env['date']} on {env['cores']} cores ({env['cpu']}), "
            f"{env['memory_gb']} GB, Linux {env['kernel']}; Python {env['python']}, "
            f"SQLite {env['sqlite']}, PostgreSQL {env['postgres']}; commit {commit}; "
            f"load average before {env['load_before'][0]}. The server, the fake model and the "
            "load generator share these cores.\n\n"
            f"Command: `{env['command']}`")


def write_docs(section: str, body: str) -> None:
    """Replace the text between `<!-- bench:SECTION:start -->` and `...:end -->`."""
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    DOCS.write_text(text)


async def main(args: argparse.Namespace, argv: list[str]) -> int:
    nofile = raise_nofile()
    QUIET["max_wait"] = args.wait_quiet
    out = args.out or run_dir()
    out.mkdir(parents=True, exist_ok=True)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    env = environment(argv)
    print(f"results and logs: {out}  (open files limit {nofile})", flush=True)
    results: dict[str, Any] = {"environment": env}
    sections: dict[str, str] = {}
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    if args.which in ("all", "messages") and args.rate_limit:
        print("messages: rate limiter off and on", flush=True)
        data = await messages.rate_limit_overhead(out, backends, args.clients or [16],
                                                  seconds, args.client, RATE_LIMIT_TURNS)
        results["messages-rate-limit"] = data
        sections["messages-rate-limit"] = messages.rate_limit_report(data)
    elif args.which in ("all", "messages"):
        print("messages: create + list throughput", flush=True)
        data = await messages.run(out, backends, args.clients or [1, 16, 64], seconds,
                                  args.client, args.profile)
        results["messages"] = data
        sections["messages"] = messages.report(data)
    if args.which == "responses":
        results["responses"], sections["responses"] = await responses.main(args, out)
    if args.which in ("all", "runs"):
        hold = args.hold if args.hold is not None else (200 if args.quick else 1000)
        print("runs: streaming overhead and held streams", flush=True)
        data = await runs.run(out, backends, run_levels(args), args.runs_client, hold,
                              hold_pacing(args), args.profile, args.api)
        results["runs"] = data
        section = "runs" if args.runs_client == "probes" else f"runs-{args.runs_client}"
        section += "" if args.api == "assistants" else f"-{args.api}"
        sections[section] = runs_report.report(data)

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    markdown = "\n\n".join(f"### {name}\n\n{describe(env)}\n\n{text}"
                           for name, text in sections.items())
    (out / "results.md").write_text(markdown + "\n")
    print("\n" + markdown)
    problems = _server_problems(results)
    if problems:
        print("\nserver log lines to look at:\n" + "\n".join(problems[:40]))
    if args.write_docs:
        for name, text in sections.items():
            write_docs(name, f"{describe(env)}\n\n{text}")
        print(f"\nwrote {DOCS}")
    print(f"\nresults and logs: {out}")
    return 0


def _server_problems(results: dict[str, Any]) -> list[str]:
    lines = []
    for section in ("messages", "messages-rate-limit"):
        for backend, found in results.get(section, {}).get("server_problems", {}).items():
            lines += [f"[{section} {backend}] {line}" for line in found]
    for b in results.get("runs", {}).get("backends", []):
        lines += [f"[runs {b['backend']}] {line}" for line in b["server_problems"]]
        if not b["server_alive"]:
            lines.append(f"[runs {b['backend']}] the server had exited; log {b['server_log']}")
    return lines


if __name__ == "__main__":
    argv = sys.argv[1:]
    # The load generator runs on uvloop, as the server does, so its own event loop takes as
    # little as it can of the cores it shares with the server.
    sys.exit(uvloop.run(main(parse_args(argv), argv)))
