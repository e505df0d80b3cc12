"""Faults: the database away for a few seconds, and a misbehaving model upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import event_names, scripted_assistant
from tests.conftest import require_postgres, start_server
from tests.proxy import TcpProxy
from tests.support import ServerProcess, postgres_database, sse_events
from vtai.testing import FakeModelServer, Garbage, Hang, Reply


@pytest.fixture(scope="module")
def proxied_db(tmp_path_factory: pytest.TempPathFactory,
               fake_model: FakeModelServer) -> Iterator[tuple[ServerProcess, TcpProxy]]:
    require_postgres()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        proxy = TcpProxy("127.0.0.1", 5432).start()
        stack.callback(proxy.stop)
        proxied = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        server = start_server(stack, tmp_path_factory.mktemp("dbfault"), "sqlite", fake_model,
                              {"VTAI_DATABASE_URL": proxied})
        yield server, proxy


def test_database_outage_gives_503_then_recovers(
        proxied_db: tuple[ServerProcess, TcpProxy]) -> None:
    server, proxy = proxied_db
    client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    thread = client.beta.threads.create(metadata={"before": "outage"})
    proxy.cut()
    try:
        for call in (lambda: client.beta.threads.retrieve(thread.id),
                     lambda: client.beta.threads.messages.create(thread.id, role="user",
                                                                 content="lost?")):
            with pytest.raises(openai.InternalServerError) as err:
                call()
            assert err.value.status_code == 503
            assert err.value.body["code"] == "database_unavailable"
        assert httpx.get(server.base_url.removesuffix("/v1") + "/healthz").status_code == 200
    finally:
        proxy.resume()
    deadline = time.monotonic() + 15
    while True:
        try:
            assert client.beta.threads.retrieve(thread.id).metadata == {"before": "outage"}
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
    # nothing half-written is visible: the message sent during the outage does not exist
    assert list(client.beta.threads.messages.list(thread.id)) == []
    client.beta.threads.messages.create(thread.id, role="user", content="after")
    assert len(list(client.beta.threads.messages.list(thread.id))) == 1


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory,
              fake_model: FakeModelServer) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("impatient"), "sqlite", fake_model,
                           {"VTAI_UPSTREAM_TIMEOUT": "1", "VTAI_UPSTREAM_MAX_RETRIES": "0"})


@pytest.mark.parametrize("step", [Garbage(), Hang(5)], ids=["garbage", "slow"])
def test_misbehaving_upstream_fails_the_run_cleanly(
        impatient: ServerProcess, fake_model: FakeModelServer, step: object) -> None:
    client = OpenAI(base_url=impatient.base_url, api_key="x", max_retries=0)
    assistant, _ = scripted_assistant(client, fake_model, step, Reply("still here"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    events = sse_events(f"{impatient.base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    assert event_names(events)[-2:] == ["thread.run.failed", "done"]
    run = client.beta.threads.runs.retrieve(events[0][1]["id"], thread_id=thread.id)  # type: ignore[index]
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert run.last_error.message
    # the server stays healthy: the next run on the same thread works
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
