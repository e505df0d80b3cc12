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
import re
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI

from bench.harness import (
    CpuMeter,
    FakeModel,
    Pacing,
    Server,
    cpu_cell,
    fake_model,
    measuring,
    others_note,
    percentiles,
    table,
    vtai_server,
)
from bench.profile import profile_summary, sampled
from bench.rawhttp import HTTPError, RawConnection

PACED = "bench-paced"
STEADY = "bench-steady"
HOLD = "bench-hold"
PROMPT = "Say twenty words, please."


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


# Each worker of the load generator gets clients of its own: httpcore's connection pool does
# O(connections) work for every request and response, so one pool of 200 busy connections
# spends the load generator's CPU on pool bookkeeping instead of on reading streams.
_LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
_TIMEOUT = httpx.Timeout(120, connect=30)


class _SdkPaths:
    """Both paths through the official SDK, as an application calls them."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = self._sdk(model_url)
        self.server = self._sdk(server_url)

    @staticmethod
    def _sdk(base_url: str) -> AsyncOpenAI:
        http = httpx.AsyncClient(limits=_LIMITS, timeout=_TIMEOUT)
        return AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http)

    async def direct(self, model: str) -> tuple[float | None, str]:
        """Time of the first content delta (None if none came), and how the stream ended."""
        first = None
        stream = await self.model.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True)
        finish = "no finish_reason"
        async for chunk in stream:
            if chunk.choices:
                if first is None and chunk.choices[0].delta.content:
                    first = time.perf_counter()
                finish = chunk.choices[0].finish_reason or finish
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        """Time of the first `thread.message.delta`, and the run's last status."""
        first = None
        status = "no status"
        async with self.server.beta.threads.runs.stream(
                thread_id=thread_id, assistant_id=assistant_id) as stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    if first is None:
                        first = time.perf_counter()
                elif event.event.startswith("thread.run."):
                    status = event.event.removeprefix("thread.run.")
                elif event.event == "error":
                    return first, f"error event: {event.data}"
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        """Time of the first `response.output_text.delta`, and how the response ended."""
        first = None
        status = "no status"
        stream = await self.server.responses.create(model=model, input=PROMPT, stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                if first is None:
                    first = time.perf_counter()
            elif event.type in _RESPONSE_ENDS:
                status = event.type.removeprefix("response.")
        return first, status

    async def close(self) -> None:
        await self.model.close()
        await self.server.close()


class _HttpxPaths:
    """Both paths as raw SSE over httpx: the least client CPU, for a view of the server alone."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = httpx.AsyncClient(base_url=model_url, limits=_LIMITS, timeout=_TIMEOUT)
        self.server = httpx.AsyncClient(base_url=server_url, limits=_LIMITS, timeout=_TIMEOUT)

    async def direct(self, model: str) -> tuple[float | None, str]:
        first = None
        finish = "no finish_reason"
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                "stream": True}
        async with self.model.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}"
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = orjson.loads(line[6:])["choices"]
                if choices:
                    if first is None and choices[0]["delta"].get("content"):
                        first = time.perf_counter()
                    finish = choices[0]["finish_reason"] or finish
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = {"assistant_id": assistant_id, "stream": True}
        async with self.server.stream("POST", f"/threads/{thread_id}/runs",
                                      json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            async for line in response.aiter_lines():
                if not line.startswith("event: "):
                    continue
                if line == "event: thread.message.delta":
                    if first is None:
                        first = time.perf_counter()
                elif line.startswith("event: thread.run."):
                    status = line.removeprefix("event: thread.run.")
                elif line == "event: error":
                    status = "error event"
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = {"model": model, "input": PROMPT, "stream": True}
        async with self.server.stream("POST", "/responses", json=body) as response:
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
            async for line in response.aiter_lines():
                if line == "event: response.output_text.delta":
                    if first is None:
                        first = time.perf_counter()
                elif line.removeprefix("event: ") in _RESPONSE_ENDS:
                    status = line.removeprefix("event: response.")
        return first, status

    async def close(self) -> None:
        await self.model.aclose()
        await self.server.aclose()


_CONTENT = re.compile(rb'"content":"[^"]')
_RUN_STATUS = re.compile(rb"event: (?:thread\.run\.(\w+)|(error))\n")
_RESPONSE_END = re.compile(rb"event: response\.(completed|failed|incomplete)\n")
_RESPONSE_ENDS = ("response.completed", "response.failed", "response.incomplete")
_TAIL = 64  # bytes kept from one piece to the next, so a pattern split between them is found


class _RawPaths:
    """Both paths as SSE bytes over bench.rawhttp, scanned without parsing: the least
    client CPU of all, so the load generator takes the least from the server's cores."""

    def __init__(self, model_url: str, server_url: str) -> None:
        self.model = RawConnection(model_url)
        self.server = RawConnection(server_url)

    async def direct(self, model: str) -> tuple[float | None, str]:
        first = None
        finish = "no finish_reason"
        body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}],
                             "stream": True})
        seen = b""
        try:
            async for piece in self.model.stream("POST", "/chat/completions", body):
                seen = seen[-_TAIL:] + piece
                if first is None and _CONTENT.search(seen):
                    first = time.perf_counter()
                if b'"finish_reason":"stop"' in seen:
                    finish = "stop"
        except HTTPError as err:
            return None, str(err)
        return first, finish

    async def ours(self, thread_id: str, assistant_id: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = orjson.dumps({"assistant_id": assistant_id, "stream": True})
        seen = b""
        try:
            async for piece in self.server.stream("POST", f"/threads/{thread_id}/runs", body):
                seen = seen[-_TAIL:] + piece
                if first is None and b"event: thread.message.delta\n" in seen:
                    first = time.perf_counter()
                for run_status, _ in _RUN_STATUS.findall(piece):
                    status = run_status.decode() if run_status else "error event"
        except HTTPError as err:
            return None, str(err)
        return first, status

    async def response(self, model: str) -> tuple[float | None, str]:
        first = None
        status = "no status"
        body = orjson.dumps({"model": model, "input": PROMPT, "stream": True})
        seen = b""
        try:
            async for piece in self.server.stream("POST", "/responses", body):
                seen = seen[-_TAIL:] + piece
                if first is None and b"event: response.output_text.delta\n" in seen:
                    first = time.perf_counter()
                for end in _RESPONSE_END.findall(piece):
                    status = end.decode()
        except HTTPError as err:
            return None, str(err)
        return first, status

    async def close(self) -> None:
        await self.model.close()
        await self.server.close()


_Paths = _SdkPaths | _HttpxPaths | _RawPaths
_CLIENTS: dict[str, type[_SdkPaths] | type[_HttpxPaths] | type[_RawPaths]] = {
    "sdk": _SdkPaths, "httpx": _HttpxPaths, "raw": _RawPaths}
# `probes`: one worker in PROBE_EVERY (the first, the fifth, ...) is an application on the
# official SDK, and only those are measured; the others load the server as many clients do,
# reading raw SSE bytes, so the load generator's SDK parsing does not take the cores the
# server needs (as it would not with the applications on machines of their own).
PROBE_EVERY = 4
STEADY_JITTER = 0.02  # of one model time: 48 ms in the steady shape


def is_probe(client: str, index: int) -> bool:
    """Whether worker ``index`` is measured (with any client but `probes`, all are)."""
    return client != "probes" or index % PROBE_EVERY == 0


def measured_workers(client: str, concurrency: int) -> int:
    return sum(is_probe(client, i) for i in range(concurrency))


def _make_paths(client: str, index: int, model_url: str, server_url: str) -> _Paths:
    if client == "probes":
        return (_SdkPaths if is_probe(client, index) else _RawPaths)(model_url, server_url)
    return _CLIENTS[client](model_url, server_url)

_ROLES = ("server", "model", "client", "postgres", "irq", "rest")
_ENDS = {"direct": "stop", "ours": "completed"}


async def _phase(path: str, shape: Shape, concurrency: int, per_worker: int,
                 threads: list[str], workers: list[_Paths], assistant_id: str, server: Server,
                 model: FakeModel, client: str, alongside: dict[int, _Paths]) -> Phase:
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

    async def worker(index: int, paths: _Paths, route: str, timed: Timing) -> None:
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
    workers = [_make_paths(client, i, model.base_url, server.base_url)
               for i in range(concurrency)]
    # Not in a burst: there the machine is already saturated, and the extra load would be
    # most of what the ours phase measured.
    alongside = {i: _make_paths(client, i, model.base_url, server.base_url)
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


def report(data: dict[str, Any]) -> str:
    """The results as markdown tables."""
    text = ""
    for name, shape in data["shapes"].items():
        text += ("\n\n" if text else "") + _overhead_report(data, name, shape)
    holds = [b for b in data["backends"] if b["hold"]]
    if holds:
        hold_rows = []
        for b in holds:
            h = b["hold"]
            hold_rows.append([
                b["backend"], h["runs"], h["completed"], h["errors"], h["max_open"],
                h["max_streaming"], h["all_open_after"], h["ttft"]["p50"] / 1000,
                h["ttft"]["p99"] / 1000, h["total"]["p50"] / 1000, h["total"]["max"] / 1000,
                cpu_cell(h["cpu"], *_ROLES)])
        hp = data["hold_pacing"]
        text += "\n\n" if text else ""
        text += table(
            ["backend", "runs", "completed", "errors", "max open at once",
             "max receiving tokens at once", "all open after s", "first token p50 s",
             "first token p99 s", "end p50 s", "end max s", "cores"], hold_rows)
        text += (f"\n\nHeld streams (raw SSE over `httpx`): every run started at once; model "
                 f"time {hp['first_token_delay']:g} s to the first word, then {hp['chunks']} "
                 f"words {hp['chunk_delay']:.2g} s apart "
                 f"(~{holds[0]['hold']['model_seconds']:.1f} s). First token and end are "
                 "measured from the moment all runs were started.")
    noted = []
    for b in data["backends"]:
        noted += [(f"{b['backend']} {p['shape']} {p['path']} x{p['concurrency']}", p["cpu"],
                   p["other_processes"]) for p in b["phases"]]
        if b["hold"]:
            noted.append((f"{b['backend']} hold", b["hold"]["cpu"],
                          b["hold"]["other_processes"]))
    text += others_note(noted)
    for b in data["backends"]:
        for name, profiled in b.get("profiles", {}).items():
            if profiled:
                text += (f"\n\nServer self time by package ({b['backend']}, {name}, py-spy): "
                         f"{profiled['line']}.")
    for b in data["backends"]:
        samples = [s for p in b["phases"] for s in p["error_samples"]]
        samples += (b["hold"] or {}).get("error_samples", [])
        for sample in samples:
            text += f"\n\n- error ({b['backend']}): `{sample}`"
    return text


def _overhead_report(data: dict[str, Any], name: str, shape: dict[str, Any]) -> str:
    ttft_rows: list[list[Any]] = []
    total_rows: list[list[Any]] = []
    rest_rows: list[list[Any]] = []
    beside_rows: list[list[Any]] = []
    for b in data["backends"]:
        phases = [p for p in b["phases"] if p["shape"] == name]
        by_key = {(p["path"], p["concurrency"]): p for p in phases}
        for concurrency in sorted({p["concurrency"] for p in phases}):
            direct, ours = by_key[("direct", concurrency)], by_key[("ours", concurrency)]
            head = [b["backend"], concurrency, ours["measured"]]
            ttft_rows.append(head + _side_by_side(direct["ttft"], ours["ttft"]) + [
                f"{direct['errors']}/{ours['errors']}", _per_run_ms(direct, "model")])
            total_rows.append(head + _side_by_side(direct["total"], ours["total"]) + [
                cpu_cell(direct["cpu"], *_ROLES), cpu_cell(ours["cpu"], *_ROLES),
                _per_run_ms(ours, "server")])
            if ours.get("alongside_ttft"):
                total = _side_by_side(ours["alongside_total"], ours["total"])
                beside_rows.append([
                    b["backend"], concurrency,
                    f"{ours['measured']} / {ours['alongside_measured']}",
                    *_side_by_side(ours["alongside_ttft"], ours["ttft"]), total[2], total[5]])
            if direct.get("rest_ttft") and ours.get("rest_ttft"):
                ttft = _side_by_side(direct["rest_ttft"], ours["rest_ttft"])
                total = _side_by_side(direct["rest_total"], ours["rest_total"])
                rest_rows.append([b["backend"], concurrency, ours["rest_measured"], ttft[2],
                                  ttft[5], total[2], total[5]])
    if not ttft_rows:
        return ""
    pacing = shape["pacing"]
    model_ms = shape["model_ms"]
    columns = ["direct p50", "ours p50", "overhead p50", "direct p99", "ours p99",
               "overhead p99"]
    ours_call, ours_event = _OURS[data.get("api", "assistants")]
    client = {"sdk": "the official `openai` SDK (`chat.completions.create(stream=True)` and "
                     f"{ours_call})",
              "httpx": "raw SSE over `httpx` (no SDK)",
              "raw": "SSE bytes scanned for the events that matter, over a minimal HTTP/1.1 "
                     "client (`bench.rawhttp`: no SDK, no parsing)",
              "probes": f"one worker in {PROBE_EVERY} is an application on the official "
                        "`openai` SDK (`chat.completions.create(stream=True)` and "
                        f"{ours_call}), and only those probes are measured "
                        "(\"runs measured\"); the other workers load the server with the same "
                        "runs read as raw SSE bytes (`bench.rawhttp`), so that the load "
                        "generator's SDK parsing does not take the cores the server needs, "
                        "as with applications on machines of their own. The raw workers' "
                        "own timings are in the last table"}[data["client"]]
    how = ("every worker starts at once and each run is measured" if not shape["steady"] else
           "workers start spread over one model time, so about as many runs as the "
           "concurrency are under way at every moment; each worker's first and last runs "
           "(ramping up and down) are not measured, except at concurrency 1")
    text = (f"**{name}**: {how}. Model time per answer: first token after "
            f"{pacing['first_token_delay'] * 1000:g} ms, {pacing['chunks']} words "
            f"{pacing['chunk_delay'] * 1000:g} ms apart (~{model_ms:g} ms).\n\n")
    text += ("Time to first token, ms (direct: first content delta; ours: first "
             f"{ours_event}):\n\n")
    text += table(["backend", "concurrent", "runs measured", *columns, "errors direct/ours",
                   "gauge: fake model CPU ms/answer (direct)"], ttft_rows)
    if beside_rows:
        text += ("\n\nSide by side in the same minute: while ours was measured, as many "
                 "workers again as it measured (same client, same schedule) called the model "
                 "directly, so both paths met the machine in the same state. Time to first "
                 "token, ms, then the overhead to the end of the stream:\n\n")
        text += table(["backend", "concurrent", "runs measured ours / direct", *columns,
                       "end overhead p50", "end overhead p99"], beside_rows)
    text += "\n\nTotal time to the end of the stream, ms:\n\n"
    text += table(["backend", "concurrent", "runs measured", *columns, "cores direct",
                   "cores ours", "server CPU ms/run"], total_rows)
    text += (f"\n\nClient: {client}. Overhead = ours - direct at the same percentile. Cores: "
             "CPU used on average during the phase by our server / the fake model / the load "
             "generator / PostgreSQL / interrupts (mostly loopback networking) / the rest "
             "(other processes), 1.00 being one core busy all the time; then the share of "
             "both cores that was busy. Gauge: the fake model does the same work for every "
             "answer of the direct phase, so its CPU time per answer shows how fast the "
             "machine ran (higher: slower; compare runs on the same machine).")
    if rest_rows:
        text += ("\n\nThe same phases timed by the other workers (raw SSE bytes, no SDK), "
                 "time to first token and to the end, overhead p50 / p99, ms:\n\n")
        text += table(["backend", "concurrent", "runs measured", "first token overhead p50",
                       "first token overhead p99", "end overhead p50", "end overhead p99"],
                      rest_rows)
    return text


_OURS = {"assistants": ("`beta.threads.runs.stream`", "`thread.message.delta`"),
         "responses": ("`responses.create(stream=True)`", "`response.output_text.delta`")}


def _per_run_ms(phase: dict[str, Any], role: str) -> str:
    """CPU milliseconds that ``role`` used per run of the phase."""
    return f"{phase['cpu'][role] * phase['seconds'] / max(phase['runs'], 1) * 1000:.1f}"


def _side_by_side(direct: dict[str, float], ours: dict[str, float]) -> list[float]:
    return [direct["p50"], ours["p50"], ours["p50"] - direct["p50"],
            direct["p99"], ours["p99"], ours["p99"] - direct["p99"]]

