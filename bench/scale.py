"""Scale-out benchmark on PostgreSQL: runs/s with 1, 2 and 4 `vtai worker` processes behind
one `vtai serve --no-worker`, and how long a run takes to recover when its worker is killed.

    PYTHONPATH=. .venv/bin/python -m bench.scale [--runs 300] [--lease 5]

The fake model answers at once, so runs/s measures the server and the workers, not a model.
All processes share this machine's 2 cores: more workers cannot add CPU here, so the table
shows what coordination costs as much as what it gains.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from tests.support import ServerProcess, WorkerProcess, postgres_database

from vtai.testing import FakeModelServer, Reply

TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete"}


async def _throughput(base_url: str, assistant_id: str, runs: int) -> tuple[float, int]:
    """Create ``runs`` thread-and-runs at once; seconds until all are finished, and how
    many completed."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as http:
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> str:
            async with gate:
                run = (await http.post("/threads/runs", json={
                    "assistant_id": assistant_id,
                    "thread": {"messages": [{"role": "user", "content": f"q{i}"}]}})).json()
            while True:
                await asyncio.sleep(0.1)
                async with gate:
                    got = (await http.get(f"/threads/{run['thread_id']}/runs/{run['id']}")).json()
                if got["status"] in TERMINAL:
                    return str(got["status"])

        started = time.monotonic()
        statuses = await asyncio.gather(*(one(i) for i in range(runs)))
        return time.monotonic() - started, statuses.count("completed")


def throughput(workers: int, runs: int, fake: FakeModelServer, tmp: Path) -> tuple[float, int]:
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        env = {"VTAI_DATABASE_URL": url, "VTAI_UPSTREAM_BASE_URL": fake.base_url,
               "VTAI_UPSTREAM_API_KEY": "fake"}
        server = ServerProcess(tmp / f"w{workers}", env, ("--no-worker",)).start()
        stack.callback(server.stop)
        pool = [WorkerProcess(tmp / f"w{workers}", env).start() for _ in range(workers)]
        stack.callback(lambda: [w.stop() for w in pool])
        assistant = httpx.post(f"{server.base_url}/assistants", json={"model": "fast"}).json()
        return asyncio.run(_throughput(server.base_url, assistant["id"], runs))


def recovery(lease: int, fake: FakeModelServer, tmp: Path) -> tuple[float, float]:
    """Kill -9 the worker of a streaming run: seconds until another worker claims it, and
    until it completes."""
    fake.script("slow", Reply(" ".join(f"w{i}" for i in range(400)), chunk_delay=0.05),
                Reply("recovered"))
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        env = {"VTAI_DATABASE_URL": url, "VTAI_UPSTREAM_BASE_URL": fake.base_url,
               "VTAI_UPSTREAM_API_KEY": "fake", "VTAI_RUN_LEASE_SECONDS": str(lease)}
        server = ServerProcess(tmp / "recovery", env, ("--no-worker",)).start()
        stack.callback(server.stop)
        pool = [WorkerProcess(tmp / "recovery", env).start() for _ in range(2)]
        stack.callback(lambda: [w.stop() for w in pool])
        http = httpx.Client(base_url=server.base_url, timeout=30)
        assistant = http.post("/assistants", json={"model": "slow"}).json()
        run = http.post("/threads/runs", json={"assistant_id": assistant["id"]}).json()
        while (victim := next((w for w in pool if w.claimed(run["id"])), None)) is None:
            time.sleep(0.05)
        time.sleep(1.0)  # mid-stream
        victim.kill()
        killed = time.monotonic()
        survivor = next(w for w in pool if w is not victim)
        while not survivor.claimed(run["id"]):
            time.sleep(0.05)
        claimed = time.monotonic() - killed
        while http.get(f"/threads/{run['thread_id']}/runs/{run['id']}").json()["status"] \
                not in TERMINAL:
            time.sleep(0.05)
        return claimed, time.monotonic() - killed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--lease", type=int, default=5)
    args = parser.parse_args()
    with FakeModelServer(default=Reply("ok")) as fake, \
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        print("| workers | runs | completed | seconds | runs/s |")
        print("| --- | --- | --- | --- | --- |")
        for workers in (1, 2, 4):
            seconds, completed = throughput(workers, args.runs, fake, Path(tmp))
            print(f"| {workers} | {args.runs} | {completed} | {seconds:.1f} | "
                  f"{args.runs / seconds:.0f} |")
        claimed, done = recovery(args.lease, fake, Path(tmp))
        print(f"\nrecovery with a {args.lease} s lease: reclaimed {claimed:.1f} s after "
              f"kill -9, completed {done:.1f} s after it")


if __name__ == "__main__":
    main()
