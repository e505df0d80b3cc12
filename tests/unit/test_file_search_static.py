"""The static embedding model distilled from MiniLM: its distillation, its cache, its vectors,
and search over stores that hold vectors of several models."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from vtai.server.retrieval import embeddings, stores
from vtai.server.retrieval.chunking import Strategy, chunk
from vtai.server.retrieval.embedders import Embedders
from vtai.server.retrieval.embeddings import (
    STATIC_DIMS,
    STATIC_MODEL,
    Embedder,
    LocalEmbedder,
    StaticEmbedder,
    distill,
)
from vtai.server.retrieval.search import ALPHA, SearchIndex
from vtai.server.retrieval.tokens import tokenize, tokenizer
from vtai.server.retrieval.vectors import VectorCache
from vtai.server.settings import RetrievalSettings
from vtai.server.store import tables
from vtai.server.store.db import Database

DOCUMENTS = {
    "bread": "Knead the dough for ten minutes, let it rise until doubled, then bake the loaf "
             "in a hot oven until the crust is golden.",
    "whales": "The blue whale is the largest animal ever known; these marine mammals feed on "
              "krill and sing songs that carry across the ocean.",
    "tax": "Self-employed workers must file their income tax return by the end of January and "
           "pay what they owe to the revenue service.",
    "volcano": "Magma rising through the crust erupts as lava; Etna and Kilauea pour out "
               "molten rock and throw ash into the sky.",
    "guitar": "To tune a six-string guitar, match the low E string to a reference pitch, then "
              "fret the fifth position to tune each next string.",
}
PARAPHRASES = {
    "bread": "how do I make a homemade loaf",
    "whales": "biggest creature living in the sea",
    "tax": "deadline for freelancers to declare earnings to the government",
    "volcano": "a mountain exploding with hot liquid stone",
    "guitar": "adjusting my instrument so that it sounds right",
}


class _StandIn:
    """A transformer stand-in: each token's output is a fixed random vector (plus [CLS]'s),
    so that distillation is tested in a moment."""

    cls_id = 101

    def __init__(self) -> None:
        self.table = np.random.default_rng(7).standard_normal(
            (tokenizer().get_vocab_size(), 384)).astype(np.float32)
        self.calls = 0

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.table[ids]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    """The real model, from the user's cache (distilled there on first use, in seconds)."""
    return StaticEmbedder(LocalEmbedder(), RetrievalSettings().embeddings_cache_dir)


def test_distillation_is_deterministic_and_weighs_rare_tokens_most() -> None:
    first = distill(_StandIn())  # type: ignore[arg-type]
    second = distill(_StandIn())  # type: ignore[arg-type]
    assert first.shape == (tokenizer().get_vocab_size(), STATIC_DIMS)
    assert first.dtype == np.float32 and np.array_equal(first, second)
    norms = np.linalg.norm(first, axis=1)
    for never in ("[PAD]", "[CLS]", "[SEP]", "[unused0]", "[unused993]"):
        assert norms[tokenizer().token_to_id(never)] == 0
    # SIF by Zipf rank: the earlier a token in the vocabulary, the commoner, the lighter
    comma, the, lava = (tokenizer().token_to_id(t) for t in (",", "the", "lava"))
    assert norms[comma] < 0.05 * norms[lava] and norms[the] < 0.7 * norms[lava]


def test_matrix_is_distilled_once_then_read_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = _StandIn()
    monkeypatch.setattr(embeddings, "distill", lambda transformer: distill(stand_in))  # type: ignore[arg-type]
    built = StaticEmbedder(LocalEmbedder(), tmp_path / "cache").matrix()
    calls = stand_in.calls
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith(STATIC_MODEL)
    loaded = StaticEmbedder(LocalEmbedder(), tmp_path / "cache").matrix()
    assert stand_in.calls == calls  # read, not distilled again
    assert np.array_equal(built, loaded)
    cached[0].write_bytes(b"not an array")  # a damaged cache is distilled again
    assert np.array_equal(StaticEmbedder(LocalEmbedder(), tmp_path / "cache").matrix(), built)
    assert stand_in.calls > calls


def test_unwritable_cache_only_costs_a_rebuild(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in = _StandIn()
    monkeypatch.setattr(embeddings, "distill", lambda transformer: distill(stand_in))  # type: ignore[arg-type]
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, "vtai.file_search"):
        matrix = StaticEmbedder(LocalEmbedder(), blocker / "cache").matrix()
    assert matrix.shape == (tokenizer().get_vocab_size(), STATIC_DIMS)
    assert "not cached" in caplog.text


def test_vectors_are_deterministic_and_chunks_are_their_tokens_sums(
        static: StaticEmbedder) -> None:
    text = " ".join(DOCUMENTS.values()) * 8
    tokens = tokenize(text)
    chunks = chunk(text, tokens, Strategy(100, 40))
    vectors = static.embed_chunks_now(tokens, chunks)
    assert vectors.shape == (len(chunks), STATIC_DIMS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, static.embed_chunks_now(tokens, chunks))
    matrix = static.matrix()
    for c, vector in zip(chunks, vectors, strict=True):
        direct = matrix[tokens.ids[c.token_start:c.token_end]].sum(axis=0)
        assert np.allclose(vector, direct / np.linalg.norm(direct), atol=1e-5)
    again = StaticEmbedder(static.transformer, static.cache_dir)
    assert np.array_equal(again.embed_texts(["a query"]), static.embed_texts(["a query"]))


def test_paraphrased_queries_rank_their_documents_first(static: StaticEmbedder) -> None:
    documents = static.embed_texts(list(DOCUMENTS.values()))
    queries = static.embed_texts(list(PARAPHRASES.values()))
    best = np.argmax(queries @ documents.T, axis=1)
    assert [list(DOCUMENTS)[i] for i in best] == list(PARAPHRASES)


async def test_static_is_the_default_and_the_other_local_model_still_searches() -> None:
    default = Embedders(RetrievalSettings(), None)
    assert (await default.for_new_store()).model == STATIC_MODEL
    transformer = default.get(embeddings.LOCAL_MODEL)
    assert transformer is not None and transformer.model == embeddings.LOCAL_MODEL
    assert default.searchable() == {STATIC_MODEL, embeddings.LOCAL_MODEL}
    assert default.get("text-embedding-3-small") is None  # no endpoint to ask
    minilm = Embedders(RetrievalSettings(embeddings_local_model="minilm"), None)
    assert (await minilm.for_new_store()).model == embeddings.LOCAL_MODEL
    assert minilm.get(STATIC_MODEL) is minilm.static


def test_a_distillation_started_at_start_is_waited_for_not_repeated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The matrix distilled in the background at start: the first use waits for what is
    left of it, then nothing is distilled again."""
    stand_in, release = _StandIn(), threading.Event()

    def slow_distill(transformer: object) -> np.ndarray:
        release.wait(30)
        return distill(stand_in)  # type: ignore[arg-type]

    monkeypatch.setattr(embeddings, "distill", slow_distill)
    static = StaticEmbedder(LocalEmbedder(), tmp_path / "cache")
    assert not static.ready
    with caplog.at_level(logging.INFO, "vtai.file_search"):
        building = static.prepare_in_background()
        used: list[np.ndarray] = []
        first_use = threading.Thread(target=lambda: used.append(static.embed_texts(["lava"])))
        first_use.start()
        first_use.join(0.3)
        assert first_use.is_alive() and not used  # waiting for the background build
        release.set()
        first_use.join(30)
        building.join(30)
    assert len(used) == 1 and static.ready
    assert caplog.text.count("distilling them") == 1
    assert "distilled (in the background at start)" in caplog.text
    assert "on first use" not in caplog.text


class _Models:
    """Fixed embedders, by model name (what ``Embedders`` is to the search)."""

    def __init__(self, *embedders: Embedder) -> None:
        self.by_name = {e.model: e for e in embedders}

    def get(self, model: str) -> Embedder | None:
        return self.by_name.get(model)

    def searchable(self) -> Collection[str]:
        return list(self.by_name)


class _OtherModel:
    """An embedder of another model, with vectors of another size."""

    model = "other-model"

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def embed_chunks(self, tokens: object, chunks: Sequence[object]) -> np.ndarray:
        raise NotImplementedError

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        self.asked += queries
        return np.tile(np.eye(8, dtype=np.float32)[0], (len(queries), 1))

    async def close(self) -> None:
        return None


async def test_a_store_with_vectors_of_two_models_is_searched_with_both(
        tmp_path: Path, static: StaticEmbedder) -> None:
    """A store indexed before stores kept one model may hold vectors of several: each chunk
    is compared with the query's vector of its own model."""
    db = Database(f"sqlite:///{tmp_path / 'vtai.db'}")
    await db.migrate()
    store = stores.new_store("mixed", {}, None)
    new = static.embed_texts([DOCUMENTS["whales"], DOCUMENTS["tax"]])
    rows = [("file-new-whales", DOCUMENTS["whales"], STATIC_MODEL, new[0]),
            ("file-new-tax", DOCUMENTS["tax"], STATIC_MODEL, new[1]),
            ("file-old", "an older file about nothing in particular", "other-model",
             (np.eye(8, dtype=np.float32)[0] + np.eye(8, dtype=np.float32)[1]) / np.sqrt(2)),
            ("file-gone", "indexed by a model no longer configured", "gone-model",
             np.ones(5, dtype=np.float32) / np.sqrt(5))]
    async with db.write() as conn:
        await stores.insert_store(conn, "proj", store)
        await conn.execute(insert(tables.vector_store_chunks), [
            {"vector_store_id": store["id"], "file_id": file_id, "position": 0,
             "start_char": 0, "text": text, "tokens": 9, "model": model,
             "embedding": vector.astype(np.float32).tobytes()}
            for file_id, text, model, vector in rows])
        await stores.bump_index(conn, store["id"])
    other = _OtherModel()
    index = SearchIndex(db, _Models(static, other), VectorCache(1 << 20))  # type: ignore[arg-type]
    hits = await index.search([store["id"]], [PARAPHRASES["whales"]], 10, mode="vector")
    scores = {h.file_id: h.score for h in hits}
    assert scores["file-new-whales"] > scores["file-new-tax"]
    assert scores["file-old"] == pytest.approx(np.sqrt(0.5))  # with its own model's query
    assert "file-gone" not in scores  # no model to embed the query with: words only
    assert other.asked == [PARAPHRASES["whales"]]
    worded = {h.file_id: h.score for h in await index.search([store["id"]], ["configured"], 10)}
    assert worded["file-gone"] == pytest.approx(1 - ALPHA)  # its words' part alone
    await db.close()
