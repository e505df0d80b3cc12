"""A run on a thread this server process made starts its model call before the run-start
read (runs.known_threads, PostgreSQL only), and answers from what is stored all the same:
when another process changed the thread meanwhile, and while another process shares the
database (then nothing is guessed)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from openai import OpenAI

from tests.api.runs_support import scripted_assistant
from tests.conftest import start_server
from tests.support import ServerProcess, WorkerProcess
from vtai.testing import Echo, FakeModelServer

ALONE = "runs start from known threads"
NOT_ALONE = "runs start after reading their threads"


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory,
              fake_model: FakeModelServer) -> Iterator[ServerProcess]:
    """A server of its own on a PostgreSQL database of its own, alone on it."""
    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("known"), "postgres", fake_model)
        _until(lambda: ALONE in server.log())
        yield server


@pytest.fixture(scope="module")
def pg_client(pg_server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=pg_server.base_url, api_key="unused", max_retries=0)


def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _guesses(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    found = dict(re.findall(r'^vtai_run_starts_guessed_total\{guess="(\w+)"\} (\S+)$', text,
                            re.M))
    return {guess: float(found.get(guess, 0)) for guess in ("right", "wrong")}


def _answer(client: OpenAI, thread_id: str, assistant_id: str) -> str:
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id,
                                                   assistant_id=assistant_id)
    assert run.status == "completed", run.last_error
    message = client.beta.threads.messages.list(thread_id, limit=1).data[0]
    assert message.run_id == run.id
    return str(message.content[0].text.value)  # type: ignore[union-attr]


def _echoing_assistant(client: OpenAI, fake_model: FakeModelServer) -> tuple[str, str]:
    """An assistant that echoes its prompts, known to the server (a run read it)."""
    assistant, model = scripted_assistant(client, fake_model, *[Echo()] * 50,
                                          instructions="Echo.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "warm up"}])
    _answer(client, thread.id, assistant.id)
    return assistant.id, model


def test_a_run_on_a_thread_made_here_starts_from_what_is_known(
        pg_server: ServerProcess, pg_client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant_id, model = _echoing_assistant(pg_client, fake_model)
    thread = pg_client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    pg_client.beta.threads.messages.create(thread.id, role="user", content="second")
    before, sent = _guesses(pg_server), len(fake_model.requests(model))
    assert _answer(pg_client, thread.id, assistant_id) == \
        "system: Echo.\nuser: first\nuser: second"
    assert _guesses(pg_server) == {**before, "right": before["right"] + 1}
    assert len(fake_model.requests(model)) == sent + 1  # no call given up
    # Its run changed the thread: the next run on it reads it first.
    pg_client.beta.threads.messages.create(thread.id, role="user", content="third")
    assert _answer(pg_client, thread.id, assistant_id).endswith("user: third")
    assert _guesses(pg_server)["right"] == before["right"] + 1


def test_a_thread_changed_by_another_process_is_answered_from_what_is_stored(
        pg_server: ServerProcess, pg_client: OpenAI, fake_model: FakeModelServer) -> None:
    """A wrong guess: the call sent from it is given up and sent again from the read."""
    assistant_id, model = _echoing_assistant(pg_client, fake_model)
    thread = pg_client.beta.threads.create(messages=[{"role": "user", "content": "first"}])
    _insert_message_elsewhere(pg_server, pg_client, thread.id, "added elsewhere")
    before = _guesses(pg_server)
    assert _answer(pg_client, thread.id, assistant_id) == \
        "system: Echo.\nuser: first\nuser: added elsewhere"
    assert _guesses(pg_server) == {**before, "wrong": before["wrong"] + 1}
    assert [m["content"] for m in fake_model.requests(model)[-1]["messages"][1:]] in (
        ["first", "added elsewhere"], ["first"])  # (the given-up call may come last)
    assert any([m["content"] for m in request["messages"][1:]] == ["first", "added elsewhere"]
               for request in fake_model.requests(model))
    # A message modified here is not followed: the thread is read.
    thread = pg_client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    message = pg_client.beta.threads.messages.list(thread.id).data[0]
    pg_client.beta.threads.messages.update(message.id, thread_id=thread.id,
                                           metadata={"k": "v"})
    before = _guesses(pg_server)
    assert _answer(pg_client, thread.id, assistant_id) == "system: Echo.\nuser: x"
    assert _guesses(pg_server) == before


def test_nothing_is_guessed_while_another_process_shares_the_database(
        pg_server: ServerProcess, pg_client: OpenAI, fake_model: FakeModelServer,
        tmp_path: Path) -> None:
    assistant_id, _ = _echoing_assistant(pg_client, fake_model)
    seen = pg_server.log().count(NOT_ALONE)
    worker = WorkerProcess(tmp_path / "worker", {
        "VTAI_DATABASE_URL": pg_server.env["VTAI_DATABASE_URL"],
        "VTAI_UPSTREAM_BASE_URL": fake_model.base_url, "VTAI_UPSTREAM_API_KEY": "fake"})
    worker.start()
    try:
        _until(lambda: pg_server.log().count(NOT_ALONE) > seen)
        alone = pg_server.log().count(ALONE)
        thread = pg_client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        before = _guesses(pg_server)
        assert _answer(pg_client, thread.id, assistant_id) == "system: Echo.\nuser: hi"
        assert _guesses(pg_server) == before
    finally:
        worker.stop()
    _until(lambda: pg_server.log().count(ALONE) > alone)
    # What was known was forgotten: the first run reads the assistant again.
    warm = pg_client.beta.threads.create(messages=[{"role": "user", "content": "-"}])
    before = _guesses(pg_server)
    _answer(pg_client, warm.id, assistant_id)
    assert _guesses(pg_server) == before
    thread = pg_client.beta.threads.create(messages=[{"role": "user", "content": "again"}])
    before = _guesses(pg_server)
    assert _answer(pg_client, thread.id, assistant_id) == "system: Echo.\nuser: again"
    assert _guesses(pg_server) == {**before, "right": before["right"] + 1}


def _insert_message_elsewhere(server: ServerProcess, client: OpenAI, thread_id: str,
                              text: str) -> None:
    """A message stored by something other than this server process."""
    first = client.beta.threads.messages.list(thread_id).data[0].model_dump()
    message = {**first, "id": first["id"] + "x",  # (ids sort by time: it comes after)
               "created_at": first["created_at"] + 1,
               "content": [{"type": "text", "text": {"value": text, "annotations": []}}]}
    url = server.env["VTAI_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO messages (id, project_id, thread_id, run_id, created_at, data) "
            "SELECT %s, project_id, id, NULL, %s, %s FROM threads WHERE id = %s",
            (message["id"], message["created_at"], json.dumps(message), thread_id))
