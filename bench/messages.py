"""Message create + list throughput.

N concurrent clients, each on a thread of its own, loop `POST /threads/{id}/messages` then
`GET /threads/{id}/messages?limit=20` for a fixed time. A create and a list count as two
requests. Each client has one keep-alive connection. By default the clients are
`bench.rawhttp` connections (no response parsing) so the load generator, which shares the
machine's two cores with the server, takes as little CPU from it as it can; `--client httpx`
uses `httpx.AsyncClient` and `--client sdk` the official `openai` SDK, to compare.

`--rate-limit` measures instead what the per-key rate limiter adds: the same row on two
servers, one with the limiter off and one with it on at a limit no client reaches.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import timeit
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI

from bench.harness import (
    CpuMeter,
    cpu_cell,
    fake_model,
    measuring,
    others_note,
    percentiles,
    table,
    vtai_server,
)
from bench.profile import profile_summary, sampled
from bench.rawhttp import RawConnection
from vtai.server.api.limits import RateLimiter

CREATE_BODY = {"role": "user", "content": "How many messages can one server take?"}


@dataclass
class MessagesResult:
    backend: str
    clients: int
    client: str
    seconds: float
    requests: int
    errors: int
    create: dict[str, float]
    list: dict[str, float]
    cpu: dict[str, float]  # cores used on average, by role (see CpuMeter)
    other_processes: dict[str, float]  # the busiest other processes: cores
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_ms_per_request(self) -> float:
        return self.cpu.get("server", 0.0) * self.seconds / max(self.requests, 1) * 1000


class _Tally:
    def __init__(self) -> None:
        self.create: list[float] = []
        self.list: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


class _HttpxClient:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60,
                                      limits=httpx.Limits(max_connections=1))

    async def new_thread(self) -> str:
        response = await self.http.post("/threads", json={})
        response.raise_for_status()
        return str(response.json()["id"])

    async def create(self, thread_id: str) -> str | None:
        response = await self.http.post(f"/threads/{thread_id}/messages", json=CREATE_BODY)
        return None if response.status_code == 200 else _describe(response)

    async def list(self, thread_id: str) -> str | None:
        response = await self.http.get(f"/threads/{thread_id}/messages",
                                       params={"limit": 20})
        return None if response.status_code == 200 else _describe(response)

    async def close(self) -> None:
        await self.http.aclose()


class _RawClient:
    def __init__(self, base_url: str) -> None:
        self.conn = RawConnection(base_url)
        self.body = orjson.dumps(CREATE_BODY)

    async def new_thread(self) -> str:
        status, data = await self.conn.request("POST", "/threads", b"{}")
        if status != 200:
            raise RuntimeError(f"POST /threads -> {status}: {data[:300]!r}")
        return str(orjson.loads(data)["id"])

    async def create(self, thread_id: str) -> str | None:
        status, data = await self.conn.request("POST", f"/threads/{thread_id}/messages",
                                               self.body)
        return None if status == 200 else f"POST messages -> {status}: {data[:300]!r}"

    async def list(self, thread_id: str) -> str | None:
        status, data = await self.conn.request("GET", f"/threads/{thread_id}/messages?limit=20")
        return None if status == 200 else f"GET messages -> {status}: {data[:300]!r}"

    async def close(self) -> None:
        await self.conn.close()


class _SdkClient:
    def __init__(self, base_url: str) -> None:
        self.sdk = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=60)

    async def new_thread(self) -> str:
        return (await self.sdk.beta.threads.create()).id

    async def create(self, thread_id: str) -> str | None:
        await self.sdk.beta.threads.messages.create(thread_id, **CREATE_BODY)  # type: ignore
        return None

    async def list(self, thread_id: str) -> str | None:
        page = await self.sdk.beta.threads.messages.list(thread_id, limit=20)
        return None if page.data else "empty list"

    async def close(self) -> None:
        await self.sdk.close()


def _describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.url.path} -> {response.status_code}: " \
        f"{response.text[:300]}"


async def measure(base_url: str, clients: int, seconds: float, client: str = "raw",
                  meter: CpuMeter | None = None, backend: str = "") -> MessagesResult:
    """`clients` loops of create + list for `seconds`; threads are made before the clock."""
    make = {"raw": _RawClient, "httpx": _HttpxClient, "sdk": _SdkClient}[client]
    conns = [make(base_url) for _ in range(clients)]
    tally = _Tally()
    try:
        threads = await asyncio.gather(*(c.new_thread() for c in conns))
        go = asyncio.Event()
        counts = [0] * clients
        deadline = 0.0

        async def loop(index: int) -> None:
            conn, thread_id = conns[index], threads[index]
            await go.wait()
            while True:
                for op, samples in ((conn.create, tally.create), (conn.list, tally.list)):
                    t0 = time.perf_counter()
                    try:
                        problem = await op(thread_id)
                    except Exception as err:
                        problem = f"{type(err).__name__}: {err}"
                    t1 = time.perf_counter()
                    if t1 > deadline:
                        return
                    if problem is None:
                        samples.append(t1 - t0)
                        counts[index] += 1
                    else:
                        tally.error(problem)

        tasks = [asyncio.create_task(loop(i)) for i in range(clients)]
        await asyncio.sleep(0.05)
        with measuring():
            meter = (meter or CpuMeter()).start()
            start = time.perf_counter()
            deadline = start + seconds
            go.set()
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
            cpu = meter.stop()
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return MessagesResult(
        backend=backend, clients=clients, client=client, seconds=elapsed,
        requests=sum(counts), errors=tally.errors, create=percentiles(tally.create),
        list=percentiles(tally.list), cpu=cpu, other_processes=meter.top_other,
        error_samples=tally.error_samples)


async def bench_backend(out: Path, backend: str, levels: list[int], seconds: float,
                        client: str, profile: bool = False) -> dict[str, Any]:
    """Every concurrency level on one fresh server."""
    with fake_model(out, {}) as upstream, vtai_server(out, backend, upstream) as server:
        meter = CpuMeter(server=server.process.pid)
        # Warm up: connection pools, SQLAlchemy's statement cache, the first pages.
        await measure(server.base_url, max(levels), min(1.0, seconds), client, meter, backend)
        results = []
        raw = out / f"profile-messages-{backend}.txt"
        with sampled(server.process.pid, raw) if profile else nullcontext() as profiled:
            for clients in levels:
                result = await measure(server.base_url, clients, seconds, client, meter,
                                       backend)
                print(f"  messages {backend:8} clients={clients:<4} {result.rps:8,.0f} req/s  "
                      f"errors={result.errors}", flush=True)
                results.append(result)
        return {"results": results, "problems": server.problems(),
                "profile": profile_summary(profiled) if profiled else None}


async def run(out: Path, backends: list[str], levels: list[int], seconds: float,
              client: str, profile: bool = False) -> dict[str, Any]:
    results: list[MessagesResult] = []
    problems: dict[str, list[str]] = {}
    profiles: dict[str, str | None] = {}
    for backend in backends:
        found = await bench_backend(out, backend, levels, seconds, client, profile)
        results.extend(found["results"])
        problems[backend], profiles[backend] = found["problems"], found["profile"]
    return {"results": [asdict(r) | {"rps": r.rps,
                                     "server_cpu_ms_per_request": r.server_cpu_ms_per_request}
                        for r in results],
            "server_problems": problems, "profiles": profiles, "seconds": seconds,
            "client": client}


def report(data: dict[str, Any]) -> str:
    """The results as markdown tables."""
    rows = []
    for r in data["results"]:
        rows.append([r["backend"], r["clients"], r["rps"], r["create"]["p50"],
                     r["create"]["p99"], r["list"]["p50"], r["list"]["p99"], r["errors"],
                     f"{r['server_cpu_ms_per_request']:.2f}",
                     cpu_cell(r["cpu"], "server", "client", "postgres", "irq", "rest")])
    text = table(["backend", "clients", "req/s", "create p50 ms", "create p99 ms",
                  "list p50 ms", "list p99 ms", "errors", "server CPU ms/req",
                  "cores: server/client/pg/irq/rest (machine busy)"], rows)
    text += (f"\n\n{data['seconds']:g} s per row, client `{data['client']}`, one keep-alive "
             "connection per client; a create and a list count as two requests. Cores: CPU "
             "used on average during the row by the server process, the load generator, "
             "PostgreSQL's processes, interrupts (mostly loopback networking) and the rest of "
             "the machine (other processes), 1.00 being one core busy all the time; then the "
             "share of both cores that was busy. Server CPU ms/req: the server process's CPU "
             "time per request.")
    text += others_note([(f"{r['backend']} x{r['clients']}", r["cpu"], r["other_processes"])
                         for r in data["results"]])
    for backend, profiled in data.get("profiles", {}).items():
        if profiled:
            text += f"\n\nServer self time by package ({backend}, py-spy): {profiled['line']}."
    for r in data["results"]:
        for sample in r["error_samples"]:
            text += f"\n\n- error ({r['backend']}, {r['clients']} clients): `{sample}`"
    return text


NEVER_REFUSED = 100_000_000  # requests per key per minute: far above what a row sends


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Variables for the processes started inside (they copy this process's environment)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_cost_us(calls: int = 200_000) -> dict[str, float]:
    """Microseconds of one `RateLimiter.check` in this process, the limiter off and on."""
    cost = {}
    for name, per_minute in (("off", 0), ("on", NEVER_REFUSED)):
        limiter = RateLimiter(per_minute)
        cost[name] = min(timeit.repeat(lambda limiter=limiter: limiter.check("key"),
                                       number=calls, repeat=3)) / calls * 1e6
    return cost


async def rate_limit_overhead(out: Path, backends: list[str], levels: list[int],
                              seconds: float, client: str, rounds: int) -> dict[str, Any]:
    """Each row on two servers, the rate limiter off and on (never refusing), measured in
    turns (off, on, on, off, ...) so that changes in the machine's load fall on both."""
    results: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}
    for backend in backends:
        with ExitStack() as stack:
            upstream = stack.enter_context(fake_model(out, {}))
            servers = {"off": stack.enter_context(vtai_server(out, backend, upstream))}
            with _environ({"VTAI_RATE_LIMIT_PER_MINUTE": str(NEVER_REFUSED)}):
                servers["on"] = stack.enter_context(vtai_server(out, backend, upstream))
            meters = {name: CpuMeter(server=s.process.pid) for name, s in servers.items()}
            for name, server in servers.items():
                await measure(server.base_url, max(levels), min(1.0, seconds), client,
                              meters[name], backend)
            for clients in levels:
                for turn in range(rounds):
                    for name in ("off", "on") if turn % 2 == 0 else ("on", "off"):
                        r = await measure(servers[name].base_url, clients, seconds, client,
                                          meters[name], backend)
                        print(f"  rate limiter {name:3} {backend:8} clients={clients:<4} "
                              f"{r.rps:8,.0f} req/s  errors={r.errors}", flush=True)
                        results.append(asdict(r) | {
                            "limiter": name, "turn": turn, "rps": r.rps,
                            "server_cpu_ms_per_request": r.server_cpu_ms_per_request})
            problems[backend] = [f"[limiter {name}] {line}" for name, server in servers.items()
                                 for line in server.problems()]
    return {"results": results, "server_problems": problems, "seconds": seconds,
            "client": client, "rounds": rounds, "limit": NEVER_REFUSED,
            "check_us": check_cost_us()}


def _median(results: list[dict[str, Any]], field: str, limiter: str) -> float:
    return statistics.median(r[field] for r in results if r["limiter"] == limiter)


def rate_limit_report(data: dict[str, Any]) -> str:
    """Each turn's rows, then the medians side by side."""
    results = data["results"]
    rows = [[r["backend"], r["clients"], r["turn"] + 1, r["limiter"], r["rps"],
             r["create"]["p50"], r["list"]["p50"], r["errors"],
             f"{r['server_cpu_ms_per_request']:.3f}",
             cpu_cell(r["cpu"], "server", "client", "postgres", "irq", "rest")]
            for r in results]
    text = table(["backend", "clients", "turn", "limiter", "req/s", "create p50 ms",
                  "list p50 ms", "errors", "server CPU ms/req",
                  "cores: server/client/pg/irq/rest (machine busy)"], rows)
    summary = []
    for key in dict.fromkeys((r["backend"], r["clients"]) for r in results):
        row = [r for r in results if (r["backend"], r["clients"]) == key]
        rps_off, rps_on = _median(row, "rps", "off"), _median(row, "rps", "on")
        cpu_off = _median(row, "server_cpu_ms_per_request", "off")
        cpu_on = _median(row, "server_cpu_ms_per_request", "on")
        summary.append([*key, rps_off, rps_on, f"{(rps_on / rps_off - 1) * 100:+.1f}%",
                        f"{cpu_off:.3f}", f"{cpu_on:.3f}",
                        f"{(cpu_on - cpu_off) * 1000:+.0f}"])
    text += "\n\nMedians of the turns:\n\n" + table(
        ["backend", "clients", "req/s off", "req/s on", "change", "server CPU ms/req off",
         "on", "change µs/req"], summary)
    cost = data["check_us"]
    text += (f"\n\n{data['seconds']:g} s per row, {data['rounds']} turns, client "
             f"`{data['client']}`; the limiter on at {data['limit']:,} requests per key per "
             f"minute, which no row reaches. `RateLimiter.check` alone: {cost['on']:.2f} µs a "
             f"call on, {cost['off']:.2f} µs off (timeit, in the load generator's process).")
    text += others_note([(f"{r['backend']} x{r['clients']} {r['limiter']} #{r['turn'] + 1}",
                          r["cpu"], r["other_processes"]) for r in results])
    return text
