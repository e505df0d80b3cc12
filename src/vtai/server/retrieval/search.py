"""Hybrid search: lexical and vector evidence of every query, fused by a convex combination.

A chunk's score for a query is ``ALPHA * cosine + (1 - ALPHA) * lexical``, where ``lexical``
is its BM25 (or ts_rank) score over the best lexical score of that query, and ``cosine`` its
embedding's similarity with the query's (taken for every candidate, whichever list found it).
Its score is the best over the queries; both parts are in [0, 1], so ``score_threshold``
reads as a similarity. Against reciprocal rank fusion, which counts only ranks, this keeps
the size of the gap between a close paraphrase and a chunk that merely shares a common word
(docs/file-search.md has the measurements).

A store keeps one model (``embedders.py``), but one indexed before stores kept theirs may
hold vectors of several: the query is embedded by each of them, and a chunk's cosine is
always with the query's vector of its own model. A model that cannot embed the query (its
endpoint fails, the local model's file fails its check) leaves its chunks to the words, and
says why in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import orjson
from sqlalchemy import select

from vtai.server.retrieval import lexical
from vtai.server.retrieval.embeddings import Embedder, EmbeddingUnavailable
from vtai.server.retrieval.modelfiles import ModelFileError
from vtai.server.retrieval.vectors import StoreVectors, VectorCache
from vtai.server.store import tables
from vtai.server.store.db import Connection, Database

log = logging.getLogger("vtai.file_search")

ALPHA = 0.8
Mode = Literal["hybrid", "lexical", "vector"]
chunks, files, vsf = tables.vector_store_chunks, tables.files, tables.vector_store_files


@dataclass
class Hit:
    chunk_id: int
    vector_store_id: str
    file_id: str
    score: float
    text: str = ""
    filename: str = ""
    attributes: dict[str, object] | None = None


def candidates(limit: int) -> int:
    """How deep each list is read before fusion."""
    return max(40, 2 * limit)


def combine(lexical_hits: list[tuple[int, str, float]], cosines: dict[int, float],
            files_of: dict[int, str], mode: Mode, alpha: float = ALPHA) -> dict[int, float]:
    """Scores of one query's candidates."""
    best = max((s for _, _, s in lexical_hits), default=0.0)
    lex = {c: s / best for c, _, s in lexical_hits} if best > 0 else {}
    weight = {"hybrid": alpha, "vector": 1.0, "lexical": 0.0}[mode]
    return {c: weight * max(cosines.get(c, 0.0), 0.0) + (1 - weight) * lex.get(c, 0.0)
            for c in files_of}


class Models(Protocol):
    """The embedding models whose vectors can be searched (``embedders.Embedders``)."""

    def get(self, model: str) -> Embedder | None:
        ...

    def searchable(self) -> Collection[str] | None:
        """Names of the models there may be an embedder for; None: any."""
        ...


class SearchIndex:
    def __init__(self, db: Database, models: Models, cache: VectorCache) -> None:
        self.db = db
        self.models = models
        self.cache = cache
        self.common_words = lexical.CommonWords()

    async def _held(self, conn: Connection, stores: list[str]) -> list[StoreVectors]:
        rows = (await conn.execute(select(
            tables.vector_stores.c.id, tables.vector_stores.c.index_version).where(
            tables.vector_stores.c.id.in_(stores)))).all()
        return [vectors for row in rows for vectors in await self.cache.get(
            conn, row.id, int(row.index_version), self.models.searchable())]

    async def _embed(self, held: list[StoreVectors], queries: list[str]
                     ) -> dict[str, np.ndarray]:
        """The queries' vectors by each model that the stores have vectors of and that can
        embed them now."""
        vectors = {}
        for model in dict.fromkeys(h.model for h in held if len(h.ids)):
            embedder = self.models.get(model)
            if embedder is None:
                continue
            try:
                vectors[model] = await embedder.embed_queries(queries)
            except (EmbeddingUnavailable, ModelFileError) as err:
                log.error("searching by words only the chunks embedded by %s: %s", model, err)
        return vectors

    async def search(self, stores: list[str], queries: list[str], limit: int,
                     allowed_files: set[str] | None = None, threshold: float = 0.0,
                     mode: Mode = "hybrid") -> list[Hit]:
        """The best ``limit`` chunks of these vector stores for the queries, with their text,
        file name and attributes."""
        queries = [q for q in queries if q.strip()]
        if not stores or not queries:
            return []
        depth = candidates(limit)
        scores: dict[int, float] = {}
        file_of: dict[int, str] = {}
        async with self.db.read() as conn:
            held = await self._held(conn, stores) if mode != "lexical" else []
            vectors = await self._embed(held, queries)
            for i, query in enumerate(queries):
                lexical_hits = [] if mode == "vector" else await lexical.search(
                    conn, self.db.is_sqlite, query, stores, depth, allowed_files,
                    self.common_words)
                found = {c: f for c, f, _ in lexical_hits}
                cosines: dict[int, float] = {}
                for store in held:
                    if store.model not in vectors:
                        continue
                    asked = vectors[store.model]
                    for c, f, cosine in store.top(asked[i:i + 1], depth, allowed_files)[0]:
                        found[c], cosines[c] = f, cosine
                    cosines.update(store.similarity(asked[i], list(found)))
                for c, score in combine(lexical_hits, cosines, found, mode).items():
                    if score > scores.get(c, -1.0):
                        scores[c], file_of[c] = score, found[c]
            ranked = sorted(((s, c) for c, s in scores.items() if s >= threshold),
                            key=lambda item: (-item[0], item[1]))[:limit]
            if not ranked:
                return []
            return await self._hits(conn, stores, [(c, file_of[c], s) for s, c in ranked])

    async def _hits(self, conn: Connection, stores: list[str],
                    ranked: list[tuple[int, str, float]]) -> list[Hit]:
        rows = {row.id: row for row in (await conn.execute(select(
            chunks.c.id, chunks.c.vector_store_id, chunks.c.text).where(
            chunks.c.id.in_([c for c, _, _ in ranked])))).all()}
        file_ids = list({f for _, f, _ in ranked})
        names = {r.id: r.data for r in (await conn.execute(select(
            files.c.id, files.c.data).where(files.c.id.in_(file_ids)))).all()}
        attrs = {(r.vector_store_id, r.id): r.data for r in (await conn.execute(select(
            vsf.c.vector_store_id, vsf.c.id, vsf.c.data).where(
            vsf.c.id.in_(file_ids), vsf.c.vector_store_id.in_(stores)))).all()}
        hits = []
        for chunk_id, file_id, score in ranked:
            found = rows.get(chunk_id)
            if found is None:  # removed meanwhile
                continue
            name = orjson.loads(names[file_id])["filename"] if file_id in names else file_id
            entry = attrs.get((found.vector_store_id, file_id))
            hits.append(Hit(chunk_id, found.vector_store_id, file_id, score, found.text, name,
                            orjson.loads(entry).get("attributes") if entry else None))
        return hits
