"""Streaming runs: what our server adds on top of the model, and how many streams it holds.

Overhead. The same fake model (one process, `bench-paced`: first token after 50 ms, then 20
words 10 ms apart) is called two ways, one after the other at each concurrency level:

- direct: `chat.completions.create(stream=True)` on the fake model; time to the first content
  delta, and to the end of the stream;
- ours: `beta.threads.runs.stream(thread_id, assistant_id)` on our server, which calls the
  fake model; time to the first `thread.message.delta`, and to the end of the stream.

Both use the official `openai` SDK (AsyncOpenAI, connection pool sized to the concurrency).
Every run has a thread of its own, made before the clock starts; the assistant is made once.
Overhead = ours - direct, at p50 and p99. In the steady shape, while ours is measured, as many
workers again as it measures call the model directly on the same schedule: the overhead
against them compares the two paths at the same moments, on a machine in the same state.

Hold. `--hold` runs (1000 by default) are started at once on a slower model (`bench-hold`,
about 9 s of model time) and held to their end; the streams are read with raw `httpx` (no SDK
parsing) since the load generator shares the cores with the server. It reports errors, how
many streams were open at once and how many were receiving tokens at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import (
    CpuMeter,
    FakeModel,
    Pacing,
    Server,
    fake_model,
    measuring,
    percentiles,
    vtai_server,
)
from bench.profile import profile_summary, sampled
from bench.run_clients import PROMPT, Paths, is_probe, make_paths

PACED = "bench-paced"
STEADY = "bench-steady"
HOLD = "bench-hold"


@dataclass
class Timing:
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:500])


@dataclass
class Phase:
    """One path (direct or ours) at one concurrency level."""

    path: str
    shape: str  # "burst" or "steady" (see Shape)
    concurrency: int
    runs: int
    measured: int
    seconds: float
    ttft: dict[str, float]
    total: dict[str, float]
    errors: int
    cpu: dict[str, float]  # cores used on average, by role (see CpuMeter)
    other_processes: dict[str, float]
    error_samples: list[str]
    # With the `probes` client: the workers that are not probes (raw SSE), timed apart.
    rest_measured: int = 0
    rest_ttft: dict[str, float] | None = None
    rest_total: dict[str, float] | None = None
    # In the ours phase: the model called directly, at the same moments, by workers of their
    # own that mirror the measured ones (see _phase).
    alongside_measured: int = 0
    alongside_ttft: dict[str, float] | None = None
    alongside_total: dict[str, float] | None = None


@dataclass(frozen=True)
class Shape:
    """How runs arrive in an overhead measurement, and how fast the model answers them."""

    name: str
    model: str  # the fake model's name for this pacing
    pacing: Pacing
    steady: bool  # workers start spread out (else all at once)
    # What "ours" calls: `assistants` (a run on a thread of its own, streamed) or `responses`
    # (`responses.create(stream=True)` with the same prompt).
    api: str = "assistants"


STEADY_JITTER = 0.02  # of one model time: 48 ms in the steady shape


_ENDS = {"direct": "stop", "ours": "completed"}


async def _phase(path: str, shape: Shape, concurrency: int, per_worker: int,
                 threads: list[str], workers: list[Paths], assistant_id: str, server: Server,
                 model: FakeModel, client: str, alongside: dict[int, Paths]) -> Phase:
    """`concurrency` workers, each doing `per_worker` runs one after the other. In a burst
    they all start at once and every run is measured; steadily, worker i starts i/concurrency
    of one model time late, so about `concurrency` runs are under way at any moment, and only
    the runs between a worker's first and last (when all workers are busy) are measured.
    With the `probes` client, the probes' runs are the phase's timing and the other workers'
    runs its `rest_*` timing.

    In the ours phase, the `alongside` workers (if any: one for each measured worker, keyed by
    its index, so on its schedule) call the model directly meanwhile: their `alongside_*`
    timing is the direct path at the same moments as ours, on a machine in the same state.
    The direct phase before it ran a minute earlier, and the machine's speed (shared,
    virtual) can change within a minute."""
    timing = Timing()
    rest = Timing()
    beside = Timing()
    pending = iter(threads)
    stagger = shape.pacing.model_seconds if shape.steady and concurrency > 1 else 0.0
    # Steadily, each run after a worker's first starts after a random pause of up to
    # STEADY_JITTER of one model time: without it, the runs' moments stay locked in the
    # pattern of the first runs' starts for the whole phase, and one phase measures one
    # alignment of them (which runs' tokens meet which runs' ends) rather than many.
    jitter = random.Random(concurrency)

    async def worker(index: int, paths: Paths, route: str, timed: Timing) -> None:
        await asyncio.sleep(stagger * index / concurrency)
        for n in range(per_worker):
            if stagger and n:
                await asyncio.sleep(jitter.uniform(0, STEADY_JITTER * stagger))
            thread_id = next(pending) if route == "ours" and threads else ""
            start = time.perf_counter()
            try:
                if route == "direct":
                    first, end = await paths.direct(shape.model)
                elif shape.api == "responses":
                    first, end = await paths.response(shape.model)
                else:
                    first, end = await paths.ours(thread_id, assistant_id)
            except Exception as err:
                timed.error(f"{route}: {type(err).__name__}: {err}")
                continue
            if first is None or end != _ENDS[route]:
                timed.error(f"{route} ({thread_id}): ended with {end}, "
                            f"first delta {'seen' if first else 'never seen'}")
                continue
            if stagger and not 0 < n < per_worker - 1:
                continue  # ramping up or down: fewer runs than `concurrency` under way
            timed.ttft.append(first - start)
            timed.total.append(time.perf_counter() - start)

    with measuring():
        meter = CpuMeter(server=server.process.pid, model=model.process.pid).start()
        start = time.perf_counter()
        runs = [worker(i, paths, path, timing if is_probe(client, i) else rest)
                for i, paths in enumerate(workers)]
        if path == "ours":
            runs += [worker(i, paths, "direct", beside) for i, paths in alongside.items()]
        await asyncio.gather(*runs)
        elapsed = time.perf_counter() - start
    return Phase(path=path, shape=shape.name, concurrency=concurrency,
                 runs=concurrency * per_worker, measured=len(timing.ttft), seconds=elapsed,
                 ttft=percentiles(timing.ttft), total=percentiles(timing.total),
                 errors=timing.errors + rest.errors + beside.errors, cpu=meter.stop(),
                 other_processes=meter.top_other,
                 error_samples=(timing.error_samples + rest.error_samples
                                + beside.error_samples)[:5],
                 rest_measured=len(rest.ttft),
                 rest_ttft=percentiles(rest.ttft) if rest.ttft else None,
                 rest_total=percentiles(rest.total) if rest.total else None,
                 alongside_measured=len(beside.ttft),
                 alongside_ttft=percentiles(beside.ttft) if beside.ttft else None,
                 alongside_total=percentiles(beside.total) if beside.total else None)


# ------------------------------------------------------------------------- setup helpers


async def _create_assistant(base_url: str, model: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        response = await http.post("/assistants", json={"model": model, "name": "bench"})
        response.raise_for_status()
        return str(response.json()["id"])


async def _create_threads(base_url: str, count: int, concurrency: int = 16) -> list[str]:
    """`count` threads holding one user message each."""
    ids: list[str] = []
    body = {"messages": [{"role": "user", "content": PROMPT}]}
    async with httpx.AsyncClient(base_url=base_url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:

        async def make(n: int) -> None:
            for _ in range(n):
                response = await http.post("/threads", json=body)
                response.raise_for_status()
                ids.append(response.json()["id"])

        share, extra = divmod(count, concurrency)
        await asyncio.gather(*(make(share + (i < extra)) for i in range(concurrency)))
    return ids


# ------------------------------------------------------------------------------ overhead


async def overhead(server: Server, model: FakeModel, shape: Shape, levels: dict[int, int],
                   client: str) -> list[Phase]:
    """At each concurrency level (-> runs per worker): the direct phase, then ours."""
    assistant_id = await _create_assistant(server.base_url, shape.model)
    # Warm up both paths (connections, the server's upstream client, statement caches).
    await _phases(server, model, Shape("warm-up", shape.model, shape.pacing, False, shape.api),
                  assistant_id, 4, 2, client)
    phases = []
    for concurrency, per_worker in levels.items():
        for phase in await _phases(server, model, shape, assistant_id, concurrency, per_worker,
                                   client):
            print(f"    {shape.name:6} {phase.path:6} x{concurrency:<4} ttft p50 "
                  f"{phase.ttft['p50']:7.1f} ms  total p50 {phase.total['p50']:7.1f} ms  "
                  f"errors={phase.errors}", flush=True)
            for sample in phase.error_samples[:2]:
                print(f"      error: {sample}", flush=True)
            phases.append(phase)
    return phases


async def _phases(server: Server, model: FakeModel, shape: Shape, assistant_id: str,
                  concurrency: int, per_worker: int, client: str) -> list[Phase]:
    threads = (await _create_threads(server.base_url, concurrency * per_worker)
               if shape.api == "assistants" else [])
    workers = [make_paths(client, i, model.base_url, server.base_url)
               for i in range(concurrency)]
    # Not in a burst: there the machine is already saturated, and the extra load would be
    # most of what the ours phase measured.
    alongside = {i: make_paths(client, i, model.base_url, server.base_url)
                 for i in range(concurrency) if is_probe(client, i) and shape.steady}
    try:
        return [await _phase(path, shape, concurrency, per_worker, threads, workers,
                             assistant_id, server, model, client, alongside)
                for path in ("direct", "ours")]
    finally:
        await asyncio.gather(*(paths.close() for paths in [*workers, *alongside.values()]))


# ---------------------------------------------------------------------------------- hold


@dataclass
class HoldResult:
    runs: int
    model_seconds: float
    completed: int
    errors: int
    max_open: int  # SSE responses open at once
    max_streaming: int  # runs between their first message delta and their end, at once
    all_open_after: float  # seconds from the start until every stream had its response
    seconds: float  # from the start until the last stream ended
    ttft: dict[str, float]
    total: dict[str, float]
    status_counts: dict[str, int]
    cpu: dict[str, float]
    other_processes: dict[str, float]
    error_samples: list[str]


class _Gauge:
    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    def up(self) -> None:
        self.now += 1
        self.max = max(self.max, self.now)

    def down(self) -> None:
        self.now -= 1


async def hold(server: Server, model: FakeModel, runs: int, pacing: Pacing,
               clients_per_pool: int = 10) -> HoldResult:
    """Start `runs` streaming runs at once and read them all to the end with raw httpx."""
    assistant_id = await _create_assistant(server.base_url, HOLD)
    threads = await _create_threads(server.base_url, runs)
    timing = Timing()
    open_, streaming = _Gauge(), _Gauge()
    opened: list[float] = []
    statuses: dict[str, int] = {}
    timeout = httpx.Timeout(connect=60, read=300, write=60, pool=60)
    pools = [httpx.AsyncClient(base_url=server.base_url, timeout=timeout,
                               limits=httpx.Limits(max_connections=clients_per_pool + 1))
             for _ in range(-(-runs // clients_per_pool))]
    start = 0.0

    async def one(index: int) -> None:
        http = pools[index // clients_per_pool]
        body = {"assistant_id": assistant_id, "stream": True}
        first = None
        status = "no status"
        is_open = False
        try:
            async with http.stream("POST", f"/threads/{threads[index]}/runs",
                                   json=body) as response:
                if response.status_code != 200:
                    timing.error(f"HTTP {response.status_code}: "
                                 f"{(await response.aread())[:300]!r}")
                    status = f"http {response.status_code}"
                    return
                open_.up()
                is_open = True
                opened.append(time.perf_counter())
                event = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        if event == "thread.message.delta" and first is None:
                            first = time.perf_counter()
                            streaming.up()
                        elif event.startswith("thread.run."):
                            status = event[11:]
                    elif line.startswith("data: ") and event in ("error", "thread.run.failed"):
                        data = orjson.loads(line[6:])
                        timing.error(f"{event}: {data.get('last_error') or data}")
        except Exception as err:
            timing.error(f"{type(err).__name__}: {err!r}")
            status = "client exception"
        finally:
            if first is not None:
                streaming.down()
            if is_open:
                open_.down()
            statuses[status] = statuses.get(status, 0) + 1
        end = time.perf_counter()
        if status == "completed" and first is not None:
            timing.ttft.append(first - start)
            timing.total.append(end - start)
        elif status not in ("failed", "client exception"):  # those were counted already
            timing.error(f"run on {threads[index]} ended with status {status}")

    with measuring():
        meter = CpuMeter(server=server.process.pid, model=model.process.pid).start()
        start = time.perf_counter()
        try:
            await asyncio.gather(*(one(i) for i in range(runs)))
        finally:
            await asyncio.gather(*(p.aclose() for p in pools))
        elapsed = time.perf_counter() - start
    return HoldResult(
        runs=runs, model_seconds=pacing.model_seconds, completed=statuses.get("completed", 0),
        errors=timing.errors, max_open=open_.max, max_streaming=streaming.max,
        all_open_after=(max(opened) - start) if opened else float("nan"), seconds=elapsed,
        ttft=percentiles(timing.ttft), total=percentiles(timing.total), status_counts=statuses,
        cpu=meter.stop(), other_processes=meter.top_other, error_samples=timing.error_samples)


# ------------------------------------------------------------------------------- driver


SHAPES = {shape.name: shape for shape in (
    # Short answers, every run started together: the server's worst case, a throughput test
    # (200 such runs at once are about 800 runs a second).
    Shape("burst", PACED, Pacing(first_token_delay=0.05, chunks=20, chunk_delay=0.01),
          steady=False),
    # A served model's pace, runs under way all the time: what a deployment sees.
    Shape("steady", STEADY, Pacing(first_token_delay=0.5, chunks=20, chunk_delay=0.1),
          steady=True),
)}


async def bench_backend(out: Path, backend: str, levels: dict[str, dict[int, int]],
                        client: str, hold_runs: int, hold_pacing: Pacing, profile: bool = False,
                        api: str = "assistants") -> dict[str, Any]:
    pacing = {SHAPES[name].model: SHAPES[name].pacing for name in levels}
    pacing[HOLD] = hold_pacing
    profiles: dict[str, Any] = {}

    def profiling(server: Server, name: str) -> AbstractContextManager[Path | None]:
        raw = out / f"profile-runs-{name}-{backend}.txt"
        return sampled(server.process.pid, raw) if profile else nullcontext()

    problems: list[str] = []
    exited: list[str] = []

    def check(server: Server) -> None:
        problems.extend(server.problems())
        if not server.process.alive():
            exited.append(str(server.process.log_path))

    # Each shape, and the held streams, on a server and database of their own: what one
    # leaves behind (bigger tables, index entries not yet vacuumed, a longer WAL) does not
    # weigh on the next one's numbers.
    with fake_model(out, pacing) as model:
        phases = []
        for name, shape_levels in levels.items():
            with vtai_server(out, backend, model) as server:
                print(f"  runs {backend}: overhead, {name} ({client} client)", flush=True)
                with profiling(server, f"overhead-{name}") as raw:
                    phases += await overhead(server, model, replace(SHAPES[name], api=api),
                                             shape_levels, client)
                profiles[f"overhead ({name})"] = profile_summary(raw) if raw else None
                check(server)
        held = None
        if hold_runs:
            with vtai_server(out, backend, model) as server:
                print(f"  runs {backend}: holding {hold_runs} streams", flush=True)
                with profiling(server, "hold") as raw:
                    held = await hold(server, model, hold_runs, hold_pacing)
                profiles["hold"] = profile_summary(raw) if raw else None
                check(server)
            print(f"    completed {held.completed}/{held.runs}, errors {held.errors}, "
                  f"max open {held.max_open}, max streaming {held.max_streaming}", flush=True)
        return {"backend": backend, "phases": [asdict(p) for p in phases],
                "hold": asdict(held) if held else None, "server_problems": problems,
                "server_alive": not exited, "profiles": profiles,
                "server_log": ", ".join(exited)}


async def run(out: Path, backends: list[str], levels: dict[str, dict[int, int]], client: str,
              hold_runs: int, hold_pacing: Pacing, profile: bool = False,
              api: str = "assistants") -> dict[str, Any]:
    """``levels``: for each shape measured (see SHAPES), concurrency -> runs per worker."""
    found = [await bench_backend(out, b, levels, client, hold_runs, hold_pacing, profile, api)
             for b in backends]
    return {"backends": found, "client": client, "api": api,
            "shapes": {name: {**asdict(SHAPES[name]),
                              "model_ms": SHAPES[name].pacing.model_seconds * 1000}
                       for name in levels},
            "hold_pacing": asdict(hold_pacing)}
