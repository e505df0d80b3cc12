"""Exact vector search over the vectors of a vector store, held in this process's memory.

A store's vectors are loaded from the database on first use, one block per file, and kept
with the store's ``index_version``: when it changes, only the blocks of files added or
re-ingested since are read again. Vectors of different models are held apart (a store
indexed before stores kept their model may hold several), and only those of models that this
process can embed queries with are loaded. A query is one matrix product (float32, BLAS),
which at 100k chunks of 384 dimensions takes a few milliseconds; the least recently used
stores are dropped past the memory budget.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select

from vtai.server.store import tables
from vtai.server.store.db import Connection

chunks = tables.vector_store_chunks
_LOAD_FILES = 500  # file ids per query when loading blocks


@dataclass
class _Block:
    ids: np.ndarray  # chunk ids, int64
    matrix: np.ndarray  # float32 (n, d)


@dataclass
class StoreVectors:
    """The vectors of one model in one store."""

    model: str
    blocks: dict[tuple[str, int], _Block] = field(default_factory=dict)  # (file, first chunk)
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    files: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    rows: dict[int, int] = field(default_factory=dict)  # chunk id -> row of ``matrix``

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.ids.nbytes * 2)

    def rebuild(self) -> None:
        blocks = list(self.blocks.items())
        if not blocks:
            self.ids = np.empty(0, dtype=np.int64)
            self.files = np.empty(0, dtype=object)
            self.matrix = np.empty((0, 0), dtype=np.float32)
            self.rows = {}
            return
        self.ids = np.concatenate([b.ids for _, b in blocks])
        self.files = np.concatenate([np.full(len(b.ids), key[0], dtype=object)
                                     for key, b in blocks])
        self.matrix = np.ascontiguousarray(np.concatenate([b.matrix for _, b in blocks]))
        self.rows = {int(chunk_id): row for row, chunk_id in enumerate(self.ids)}

    def top(self, queries: np.ndarray, k: int, allowed_files: set[str] | None
            ) -> list[list[tuple[int, str, float]]]:
        """For each query vector, the (chunk id, file id, cosine) of its ``k`` nearest
        chunks."""
        if not len(self.ids) or self.matrix.shape[1] != queries.shape[1]:
            return [[] for _ in queries]
        scores = queries @ self.matrix.T  # (q, n) cosine similarities: vectors are unit
        if allowed_files is not None:
            allowed = np.fromiter((f in allowed_files for f in self.files), dtype=bool,
                                  count=len(self.files))
            scores[:, ~allowed] = -np.inf
        k = min(k, scores.shape[1])
        out = []
        for row in scores:
            best = np.argpartition(-row, k - 1)[:k]
            best = best[np.argsort(-row[best])]
            out.append([(int(self.ids[i]), str(self.files[i]), float(row[i])) for i in best
                        if row[i] != -np.inf])
        return out

    def similarity(self, query: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        """Cosines of one query with the chunks among ``chunk_ids`` held here."""
        found = [(c, self.rows[c]) for c in chunk_ids if c in self.rows]
        if not found or self.matrix.shape[1] != query.shape[0]:
            return {}
        values = self.matrix[[row for _, row in found]] @ query
        return {c: float(v) for (c, _), v in zip(found, values, strict=True)}


@dataclass
class _Held:
    version: int
    asked: frozenset[str] | None  # the models whose vectors were looked for (None: all)
    models: dict[str, StoreVectors] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.models.values())


class VectorCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._stores: OrderedDict[str, _Held] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, store_id: str) -> None:
        self._stores.pop(store_id, None)

    async def get(self, conn: Connection, store_id: str, version: int,
                  models: Collection[str] | None) -> list[StoreVectors]:
        """The store's vectors, one set per model among ``models`` (None: any) that the
        store has."""
        asked = None if models is None else frozenset(models)
        lock = self._locks.setdefault(store_id, asyncio.Lock())
        async with lock:
            held = self._stores.get(store_id)
            if held is None or held.asked != asked:
                held = _Held(version=-1, asked=asked)
            if held.version != version:
                await self._refresh(conn, store_id, held, models)
                held.version = version
            self._stores[store_id] = held
            self._stores.move_to_end(store_id)
            self._evict()
            return list(held.models.values())

    async def _refresh(self, conn: Connection, store_id: str, held: _Held,
                       models: Collection[str] | None) -> None:
        current: dict[str, set[tuple[str, int]]] = {}
        where = [chunks.c.vector_store_id == store_id]
        if models is not None:
            where.append(chunks.c.model.in_(list(models)))
        for row in (await conn.execute(
                select(chunks.c.model, chunks.c.file_id, func.min(chunks.c.id).label("first"))
                .where(*where).group_by(chunks.c.model, chunks.c.file_id))).all():
            current.setdefault(row.model, set()).add((row.file_id, int(row.first)))
        for model in set(held.models) - set(current):
            del held.models[model]
        for model, blocks in current.items():
            vectors = held.models.setdefault(model, StoreVectors(model=model))
            await self._load_blocks(conn, store_id, vectors, blocks)

    async def _load_blocks(self, conn: Connection, store_id: str, cached: StoreVectors,
                           current: set[tuple[str, int]]) -> None:
        for key in set(cached.blocks) - current:
            del cached.blocks[key]
        missing = sorted(current - set(cached.blocks))
        for begin in range(0, len(missing), _LOAD_FILES):
            keys = dict(missing[begin:begin + _LOAD_FILES])
            rows = (await conn.execute(select(chunks.c.id, chunks.c.file_id,
                                              chunks.c.embedding).where(
                chunks.c.vector_store_id == store_id, chunks.c.model == cached.model,
                chunks.c.file_id.in_(list(keys)), chunks.c.id >= min(keys.values()))
                .order_by(chunks.c.id))).all()
            by_file: dict[str, list[tuple[int, bytes]]] = {}
            for row in rows:
                by_file.setdefault(row.file_id, []).append((row.id, row.embedding))
            for file_id, items in by_file.items():
                first = keys[file_id]
                items = [item for item in items if item[0] >= first]
                matrix = np.frombuffer(b"".join(e for _, e in items), dtype=np.float32)
                cached.blocks[(file_id, first)] = _Block(
                    ids=np.array([i for i, _ in items], dtype=np.int64),
                    matrix=matrix.reshape(len(items), -1))
        cached.rebuild()

    def _evict(self) -> None:
        total = sum(s.nbytes for s in self._stores.values())
        while total > self.max_bytes and len(self._stores) > 1:
            _, dropped = self._stores.popitem(last=False)
            total -= dropped.nbytes
