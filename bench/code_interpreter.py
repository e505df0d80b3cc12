"""Code interpreter latency and throughput, local kernels and kernels on a Jupyter Kernel
Gateway side by side: `python -m bench.code_interpreter [--quick] [--backend local|gateway|both]`.

Calls go through the tool itself (``CodeInterpreterTool.call``, as the run executor makes
them: input files, the /mnt/data scans, outputs, sandboxed kernels from the pool) on a SQLite
database in a scratch directory; no model and no HTTP, so the numbers are the tool's own.
Local kernels need bubblewrap (as root: a uid per session; otherwise rootless). The gateway
is a `jupyter kernelgateway` on this machine running the sandboxed kernelspec (the test
suite's, tests/api/code_support.py), so its numbers add the gateway's hop (REST, WebSocket,
ZMQ) and the /mnt/data scans through the kernel protocol to the same sandbox.

- warm: `1+1` again and again on one thread whose kernel is running;
- new thread: the first call of a new thread, its kernel taken from the warm pool (the pool
  is given time to refill between samples, as between users' new threads);
- cold: the first call of a new thread with an empty pool (a kernel start), for comparison;
- throughput (local only): N threads at once, each making calls of `1+1` (and of 20 ms of
  CPU work) back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.api.code_support import kernel_gateway

from vtai.server import ids
from vtai.server.settings import CodeInterpreterSettings, Settings
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.server.tools.base import ToolContext
from vtai.server.tools.code_interpreter.backend import CodeSessions
from vtai.server.tools.code_interpreter.gateway_pool import GatewayPool
from vtai.server.tools.code_interpreter.pool import Pool
from vtai.server.tools.code_interpreter.sandbox import build_sandbox
from vtai.server.tools.code_interpreter.session_rows import SessionRows
from vtai.server.tools.code_interpreter.tool import CodeInterpreterTool

CPU_WORK = "sum(i * i for i in range(200_000))"  # about 20 ms of one core


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return f"p50 {p[49]:7.1f} ms   p90 {p[89]:7.1f} ms   p99 {p[98]:7.1f} ms   (n={len(ms)})"


class Bench:
    def __init__(self, data_dir: Path, pool_size: int, gateway: dict[str, str] | None = None
                 ) -> None:
        self.settings = Settings(data_dir=data_dir)
        self.db = Database(self.settings.sqlalchemy_url)
        self.files = FileStore(self.db, BlobStore(data_dir / "files"))
        self.code_settings = CodeInterpreterSettings(pool_size=pool_size,
                                                     max_sessions=pool_size + 64)
        rows = SessionRows(self.db)
        self.pool: CodeSessions
        if gateway is None:
            self.pool = Pool(self.code_settings, build_sandbox(self.code_settings),
                             data_dir / "code", rows)
        else:
            self.code_settings = self.code_settings.model_copy(update={
                "backend": "gateway", "gateway_url": gateway["VTAI_CODE_GATEWAY_URL"],
                "gateway_token": gateway["VTAI_CODE_GATEWAY_TOKEN"],
                "gateway_kernel": gateway["VTAI_CODE_GATEWAY_KERNEL"]})
            self.pool = GatewayPool(self.code_settings, rows)
        self.tool = CodeInterpreterTool(self.code_settings, self.pool)

    @property
    def ready(self) -> int:
        return len(self.pool.ready)  # type: ignore[attr-defined,unused-ignore]

    async def __aenter__(self) -> Bench:
        await self.db.migrate()
        await self.pool.start()
        if self.pool.unavailable:
            raise SystemExit(f"code interpreter unavailable: {self.pool.unavailable}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.stop()
        await self.db.close()

    def context(self, thread_id: str) -> ToolContext:
        return ToolContext(project="bench", session=thread_id, db=self.db, files=self.files,
                           settings=self.settings)

    async def call(self, thread_id: str, code: str) -> float:
        started = time.perf_counter()
        result = await self.tool.call(self.context(thread_id), ids.new_id("call_"),
                                      f'{{"code": "{code}"}}')
        elapsed = time.perf_counter() - started
        if "Error" in result.output or "unavailable" in result.output:
            raise RuntimeError(result.output)
        return elapsed

    async def pool_full(self) -> None:
        for _ in range(1200):  # a minute at most
            if self.ready >= self.code_settings.pool_size:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the pool did not refill within a minute")


async def timed(n: int, one: Callable[[int], Awaitable[float]]) -> list[float]:
    return [await one(i) for i in range(n)]


async def throughput(bench: Bench, threads: int, calls: int,
                     code: str) -> tuple[float, list[float]]:
    ids_ = [ids.new_id("thread_") for _ in range(threads)]
    for thread_id in ids_:  # kernels started before the clock
        await bench.call(thread_id, "0")
    await bench.pool_full()  # no kernel starting in the background either
    latencies: list[float] = []

    async def worker(thread_id: str) -> None:
        for _ in range(calls):
            latencies.append(await bench.call(thread_id, code))

    started = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in ids_))
    return threads * calls / (time.perf_counter() - started), latencies


async def latencies(bench: Bench, n_warm: int, n_new: int) -> tuple[list[float], list[float]]:
    """Warm calls on one thread, and first calls of new threads (kernels from the pool)."""
    await bench.pool_full()
    thread_id = ids.new_id("thread_")
    await bench.call(thread_id, "0")
    warm = await timed(n_warm, lambda _: bench.call(thread_id, "1+1"))

    async def new_thread(_: int) -> float:
        await bench.pool_full()
        return await bench.call(ids.new_id("thread_"), "1+1")

    return warm, await timed(n_new, new_thread)


async def main(quick: bool, backends: list[str]) -> None:
    n_warm, n_new, n_cold, calls = (50, 8, 2, 20) if quick else (300, 30, 5, 100)
    results: dict[str, tuple[list[float], list[float]]] = {}
    rows: list[tuple[int, str, float, list[float]]] = []
    cold: list[float] = []
    sandbox = ""
    with tempfile.TemporaryDirectory(prefix="vtai-bench-code-") as tmp:
        if "local" in backends:
            async with Bench(Path(tmp) / "local", pool_size=2) as bench:
                sandbox = bench.pool.sandbox.name  # type: ignore[attr-defined,unused-ignore]
                results["local"] = await latencies(bench, n_warm, n_new)
                for threads in (1, 2, 4, 8):
                    for label, code in (("1+1", "1+1"), ("20 ms CPU", CPU_WORK)):
                        rate, took = await throughput(bench, threads, calls, code)
                        rows.append((threads, label, rate, took))
            async with Bench(Path(tmp) / "cold", pool_size=0) as bench:
                cold = await timed(n_cold, lambda _: bench.call(ids.new_id("thread_"), "1+1"))
        if "gateway" in backends:
            with kernel_gateway(Path(tmp) / "gateway", {}) as gateway:
                async with Bench(Path(tmp) / "gw", pool_size=2,
                                 gateway=gateway.server_env()) as bench:
                    results["gateway"] = await latencies(bench, n_warm, n_new)

    print(f"code interpreter, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"sandbox {sandbox or 'bubblewrap'} (the gateway's kernels: the same, behind it)")
    for backend, (warm, fresh) in results.items():
        print(f"{backend:8} warm 1+1 call            {percentiles(warm)}")
        print(f"{backend:8} new thread, from pool    {percentiles(fresh)}")
    if cold:
        print(f"local    new thread, empty pool   {percentiles(cold)}")
    if rows:
        print("local, concurrent threads (each: calls back to back)")
    for threads, label, rate, took in rows:
        print(f"  {threads} threads  {label:9}  {rate:7.1f} calls/s   {percentiles(took)}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--backend", choices=["local", "gateway", "both"], default="both")
    args: Any = parser.parse_args(argv)
    backends = ["local", "gateway"] if args.backend == "both" else [args.backend]
    asyncio.run(main(args.quick, backends))


if __name__ == "__main__":
    cli()
