"""Vector stores, their files and file batches, and search, through the SDK."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support import ServerProcess
from tests.unit.test_file_search_extraction import make_pdf

# Eight short documents on unrelated subjects; queries below paraphrase them.
CORPUS = {
    "volcanoes.txt": "Magma rising through the crust erupts as lava. Eruptions of Mount "
                     "Etna and Kilauea pour molten rock and throw ash clouds into the sky.",
    "baking.md": "Knead the dough for ten minutes, let it prove until doubled in size, then "
                 "bake the loaf at 220 degrees until the crust is golden brown.",
    "tax.txt": "Self-employed workers must file their income tax return by the end of "
               "January and pay any balance owed to the revenue service.",
    "whales.txt": "The blue whale is the largest animal ever known; these marine mammals "
                  "feed on krill and sing songs that travel across the ocean.",
    "chess.md": "Castling moves the king two squares towards a rook, which jumps to the "
                "other side; it is illegal while the king is in check.",
    "vaccines.txt": "Immunisation trains the immune system with a harmless antigen so that "
                    "antibodies are ready when the real pathogen appears.",
    "guitar.txt": "To tune a six-string guitar, match the low E string to a reference pitch, "
                  "then fret the fifth position to tune each next string.",
    "mortgage.txt": "A fixed-rate home loan keeps the same interest rate for the whole term, "
                    "so monthly repayments to the bank do not change.",
}
PARAPHRASES = {
    "volcanoes.txt": "what happens when a mountain explodes with hot liquid stone",
    "baking.md": "how do I make bread at home",
    "tax.txt": "deadline for freelancers to declare their earnings to the government",
    "whales.txt": "biggest creature living in the sea",
    "chess.md": "special move swapping the monarch with a tower",
    "vaccines.txt": "how do jabs protect people against disease",
    "guitar.txt": "adjusting the strings of my instrument so it sounds right",
    "mortgage.txt": "borrowing money to buy a house with payments that stay the same",
}


def upload(client: OpenAI, name: str, data: bytes | str) -> str:
    payload = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(payload)), purpose="assistants").id


def corpus_store(client: OpenAI, **attributes: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A store holding CORPUS, indexed; returns its id and file ids by name."""
    store = client.vector_stores.create(name="corpus")
    ids = {name: upload(client, name, text) for name, text in CORPUS.items()}
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[{"file_id": file_id, "attributes": attributes.get(name, {})}
               for name, file_id in ids.items()])
    assert batch.status == "completed" and batch.file_counts.completed == len(CORPUS)
    return store.id, ids


def test_vector_store_lifecycle(client: OpenAI) -> None:
    store = client.vector_stores.create(
        name="Support FAQ", metadata={"team": "support"},
        expires_after={"anchor": "last_active_at", "days": 3})
    assert store.id.startswith("vs_") and store.object == "vector_store"
    assert store.status == "completed" and store.usage_bytes == 0
    assert store.file_counts.total == 0 and store.metadata == {"team": "support"}
    assert store.expires_after is not None and store.expires_after.days == 3
    assert store.expires_at == store.last_active_at + 3 * 86400
    assert client.vector_stores.retrieve(store.id).name == "Support FAQ"

    updated = client.vector_stores.update(store.id, name="FAQ", expires_after=None,
                                          metadata={"team": "docs"})
    assert updated.name == "FAQ" and updated.expires_at is None
    assert updated.metadata == {"team": "docs"}

    more = [client.vector_stores.create(name=f"s{i}").id for i in range(3)]
    listed = [s.id for s in client.vector_stores.list(limit=2, order="asc")]
    assert listed.index(store.id) < listed.index(more[0]) < listed.index(more[2])

    deleted = client.vector_stores.delete(store.id)
    assert deleted.deleted and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.vector_stores.retrieve(store.id)
    assert f"No vector store found with id '{store.id}'" in err.value.message


def test_files_upload_poll_list_content_attributes_delete(client: OpenAI) -> None:
    store = client.vector_stores.create(name="notes")
    text = "# Onboarding\n\nNew starters get a laptop on their first day.\n" * 3
    done = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("onboarding.md", io.BytesIO(text.encode())),
        attributes={"team": "hr", "year": 2024})
    assert done.status == "completed" and done.last_error is None
    assert done.object == "vector_store.file" and done.vector_store_id == store.id
    assert done.usage_bytes > len(text) and done.attributes == {"team": "hr", "year": 2024}
    assert done.chunking_strategy is not None and done.chunking_strategy.type == "static"

    refreshed = client.vector_stores.retrieve(store.id)
    assert refreshed.file_counts.completed == refreshed.file_counts.total == 1
    assert refreshed.usage_bytes == done.usage_bytes and refreshed.status == "completed"

    assert [f.id for f in client.vector_stores.files.list(store.id)] == [done.id]
    assert list(client.vector_stores.files.list(store.id, filter="failed")) == []
    content = list(client.vector_stores.files.content(done.id, vector_store_id=store.id))
    assert "".join(part.text or "" for part in content) == text.strip()

    changed = client.vector_stores.files.update(done.id, vector_store_id=store.id,
                                                attributes={"team": "it"})
    assert changed.attributes == {"team": "it"}
    removed = client.vector_stores.files.delete(done.id, vector_store_id=store.id)
    assert removed.deleted and removed.object == "vector_store.file.deleted"
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    assert client.files.retrieve(done.id).id == done.id  # the file itself stays
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(done.id, vector_store_id=store.id)


def test_batch_with_corrupt_and_unsupported_files_goes_on(client: OpenAI) -> None:
    store = client.vector_stores.create(name="mixed")
    good_pdf = make_pdf(["Annual report", "Revenue rose in every region."])
    files = [("report.pdf", good_pdf), ("broken.pdf", good_pdf[: len(good_pdf) // 2]),
             ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
             ("notes.txt", b"Plain notes about the budget.")]
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[(name, io.BytesIO(data)) for name, data in files])
    assert batch.object == "vector_store.files_batch" and batch.status == "completed"
    counts = batch.file_counts
    assert (counts.completed, counts.failed, counts.in_progress, counts.total) == (2, 2, 0, 4)

    failed = {f.id: f for f in client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id, filter="failed")}
    names = {client.files.retrieve(file_id).filename: f for file_id, f in failed.items()}
    assert set(names) == {"broken.pdf", "photo.png"}
    assert names["broken.pdf"].last_error is not None
    assert names["broken.pdf"].last_error.code == "invalid_file"
    assert names["photo.png"].last_error is not None
    assert names["photo.png"].last_error.code == "unsupported_file"
    store_now = client.vector_stores.retrieve(store.id)
    assert store_now.file_counts.failed == 2 and store_now.file_counts.completed == 2

    hits = client.vector_stores.search(store.id, query="revenue growth by region")
    assert hits.data and hits.data[0].filename == "report.pdf"


def test_cancel_batch(client: OpenAI) -> None:
    store = client.vector_stores.create(name="cancel")
    file_ids = [upload(client, f"doc{i}.txt", f"Document {i} about item {i}. " * 200)
                for i in range(25)]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=file_ids)
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.in_progress == 0
    assert cancelled.file_counts.cancelled + cancelled.file_counts.completed == 25
    assert cancelled.file_counts.cancelled > 0
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    statuses = {f.status for f in client.vector_stores.files.list(store.id, limit=100)}
    assert statuses <= {"cancelled", "completed"}


def test_chunking_strategy_validation(client: OpenAI, server: ServerProcess) -> None:
    store = client.vector_stores.create(name="chunks")
    file_id = upload(client, "long.txt", "word " * 3000)
    url = f"{server.base_url}/vector_stores/{store.id}/files"
    for static, param in (({"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0},
                           "chunking_strategy.static.max_chunk_size_tokens"),
                          ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101},
                           "chunking_strategy.static")):
        response = httpx.post(url, json={"file_id": file_id, "chunking_strategy": {
            "type": "static", "static": static}})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    done = client.vector_stores.files.create_and_poll(
        file_id, vector_store_id=store.id,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100,
                                                        "chunk_overlap_tokens": 50}})
    assert done.status == "completed"
    assert done.chunking_strategy.static.max_chunk_size_tokens == 100  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-missing")


def test_search_finds_paraphrased_documents(client: OpenAI) -> None:
    store_id, ids = corpus_store(client)
    for name, query in PARAPHRASES.items():
        page = client.vector_stores.search(store_id, query=query, max_num_results=3)
        assert page.data[0].file_id == ids[name], (query, [d.filename for d in page.data])
        assert page.data[0].filename == name and 0 < page.data[0].score <= 1
        assert page.data[0].content[0].type == "text"
    several = client.vector_stores.search(store_id, query=[PARAPHRASES["whales.txt"],
                                                           PARAPHRASES["chess.md"]])
    assert {d.filename for d in several.data[:2]} == {"whales.txt", "chess.md"}
    rewritten = client.vector_stores.search(store_id, query="What is the deadline for the tax "
                                                            "return?", rewrite_query=True)
    assert rewritten.search_query == ["deadline tax return"]  # type: ignore[attr-defined]
    assert rewritten.data[0].filename == "tax.txt"
    strict = client.vector_stores.search(store_id, query="guitar strings",
                                         ranking_options={"score_threshold": 0.99})
    assert all(d.score >= 0.99 for d in strict.data)


def test_search_attribute_filters(client: OpenAI) -> None:
    attributes = {"volcanoes.txt": {"topic": "science", "year": 2020},
                  "whales.txt": {"topic": "science", "year": 2023},
                  "tax.txt": {"topic": "money", "year": 2023},
                  "mortgage.txt": {"topic": "money", "year": 2019}}
    store_id, _ = corpus_store(client, **attributes)

    def names(filters: dict[str, Any]) -> set[str]:
        page = client.vector_stores.search(store_id, query="things", filters=filters,
                                           max_num_results=20)
        return {d.filename for d in page.data}

    assert names({"type": "eq", "key": "topic", "value": "money"}) == {"tax.txt",
                                                                       "mortgage.txt"}
    assert names({"type": "gte", "key": "year", "value": 2023}) == {"whales.txt", "tax.txt"}
    assert names({"type": "in", "key": "year", "value": [2019, 2020]}) == {
        "volcanoes.txt", "mortgage.txt"}
    assert names({"type": "and", "filters": [
        {"type": "eq", "key": "topic", "value": "science"},
        {"type": "lt", "key": "year", "value": 2021}]}) == {"volcanoes.txt"}
    assert names({"type": "or", "filters": [
        {"type": "eq", "key": "topic", "value": "nothing"},
        {"type": "ne", "key": "year", "value": 2023}]}) == {"volcanoes.txt", "mortgage.txt"}
    page = client.vector_stores.search(store_id, query="whale",
                                       filters={"type": "eq", "key": "topic",
                                                "value": "science"})
    assert page.data[0].attributes == {"topic": "science", "year": 2023}


def test_deleting_a_file_removes_it_from_stores_and_search(client: OpenAI) -> None:
    store_id, ids = corpus_store(client)
    query = PARAPHRASES["chess.md"]
    assert client.vector_stores.search(store_id, query=query).data[0].file_id == ids["chess.md"]
    client.files.delete(ids["chess.md"])
    found = {d.file_id for d in client.vector_stores.search(store_id, query=query,
                                                             max_num_results=50).data}
    assert ids["chess.md"] not in found
    store = client.vector_stores.retrieve(store_id)
    assert store.file_counts.total == len(CORPUS) - 1
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(ids["chess.md"], vector_store_id=store_id)


def test_files_keep_working_after_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Files left in progress when the server stopped are ingested when it starts again."""
    from contextlib import ExitStack

    from tests.conftest import start_server

    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("restart"), "sqlite", None)
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        store = client.vector_stores.create(name="restart")
        file_ids = [upload(client, f"r{i}.txt", f"Restart document {i}. " * 400)
                    for i in range(20)]
        client.vector_stores.file_batches.create(store.id, file_ids=file_ids)
        server.stop()
        server.start()
        deadline = time.monotonic() + 60
        while client.vector_stores.retrieve(store.id).file_counts.in_progress:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.vector_stores.retrieve(store.id).file_counts.completed == 20


def test_inline_vector_stores_of_assistants_and_threads(client: OpenAI) -> None:
    file_id = upload(client, "policy.txt", "Refunds are paid within fourteen days.")
    assistant = client.beta.assistants.create(
        model="fake-model", tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [
            {"file_ids": [file_id], "metadata": {"made": "inline"}}]}})
    resources = assistant.tool_resources
    assert resources is not None and resources.file_search is not None
    (store_id,) = resources.file_search.vector_store_ids or []
    assert client.vector_stores.retrieve(store_id).metadata == {"made": "inline"}
    done = client.vector_stores.files.poll(file_id, vector_store_id=store_id)
    assert done.status == "completed"

    thread = client.beta.threads.create(tool_resources={"file_search": {"vector_stores": [
        {"file_ids": [file_id], "chunking_strategy": {
            "type": "static", "static": {"max_chunk_size_tokens": 200,
                                         "chunk_overlap_tokens": 20}}}]}})
    assert thread.tool_resources is not None and thread.tool_resources.file_search is not None
    (thread_store,) = thread.tool_resources.file_search.vector_store_ids or []
    assert thread_store != store_id
    assert [f.id for f in client.vector_stores.files.list(thread_store)] == [file_id]

    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.create(model="fake-model", tool_resources={"file_search": {
            "vector_stores": [{"file_ids": ["file-missing"]}]}})
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.create(tool_resources={"file_search": {
            "vector_stores": [{"file_ids": [file_id], "chunking_strategy": {"type": "x"}}]}})
    assert err.value.param == "tool_resources.file_search.vector_stores[0].chunking_strategy"
