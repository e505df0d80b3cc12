"""Chunking by tokens and the embedding windows laid over chunks."""

from __future__ import annotations

import numpy as np

from vtai.server.retrieval.chunking import AUTO, Strategy, chunk
from vtai.server.retrieval.embeddings import LocalEmbedder, chunk_windows, window_grid
from vtai.server.retrieval.tokens import tokenize

TEXT = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(600))


def test_chunks_have_the_size_and_overlap_asked_for() -> None:
    tokens = tokenize(TEXT)
    chunks = chunk(TEXT, tokens, Strategy(200, 50))
    assert all(c.tokens == 200 for c in chunks[:-1]) and 0 < chunks[-1].tokens <= 200
    assert [c.token_start for c in chunks] == list(range(0, 150 * len(chunks), 150))
    assert chunks[-1].token_end == len(tokens)
    for c in chunks:
        assert TEXT[c.start_char:c.start_char + len(c.text)] == c.text
    # consecutive chunks share their overlap's text
    assert chunks[0].text.endswith(chunks[1].text[:20].split()[0]) or \
        chunks[1].text[:40] in chunks[0].text


def test_auto_strategy_is_openai_default() -> None:
    assert (AUTO.max_tokens, AUTO.overlap_tokens) == (800, 400)
    assert AUTO.to_object() == {"type": "static", "static": {
        "max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
    assert Strategy.from_object(AUTO.to_object()) == AUTO


def test_short_text_is_one_chunk_and_empty_text_none() -> None:
    assert [c.text for c in chunk("just a few words", tokenize("just a few words"), AUTO)] \
        == ["just a few words"]
    assert chunk("", tokenize(""), AUTO) == []


def test_window_grid_tiles_chunks_and_steps() -> None:
    assert window_grid(800, 400, 254) == 200
    assert window_grid(100, 100, 254) == 100
    assert window_grid(4096, 2048, 254) == 128
    assert window_grid(801, 401, 254) is None  # only tiny windows would tile it


def test_windows_of_overlapping_chunks_are_shared() -> None:
    tokens = tokenize(TEXT)
    chunks = chunk(TEXT, tokens, AUTO)
    grid = window_grid(800, 400, 254)
    first, second = (chunk_windows(c, grid, 254) for c in chunks[:2])
    assert len(first) == 4 and first[2:] == second[:2]
    uneven = chunk_windows(chunks[0], None, 254)
    assert uneven[0][0] == 0 and uneven[-1][1] == 800 and all(e - s <= 254 for s, e in uneven)


def test_chunk_vectors_are_unit_and_close_to_their_text() -> None:
    embedder = LocalEmbedder(threads=1)
    text = "The cat sat on the mat. " * 30 + "Quarterly revenue grew by eight percent. " * 30
    tokens = tokenize(text)
    chunks = chunk(text, tokens, Strategy(120, 20))
    vectors = embedder.embed_chunks_now(tokens, chunks)
    assert vectors.shape == (len(chunks), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_queries_now(["how did sales grow this quarter"])[0]
    scores = vectors @ query
    assert int(np.argmax(scores)) == len(chunks) - 1
