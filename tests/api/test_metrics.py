"""Metrics count over every project: they are served on a port of their own (on loopback by
default), never on the API port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from openai import OpenAI

from tests.api.runs_support import scripted_assistant
from tests.conftest import start_server
from tests.support import ServerProcess, free_port
from vtai.testing import FakeModelServer, Reply


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory,
            fake_model: FakeModelServer) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("metrics"), "sqlite", fake_model,
                              {"VTAI_API_KEYS": "alpha:key-alpha"},
                              ("--metrics-port", str(port)))
        yield server, port


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} not in:\n{text}"
    return float(found.group(1))


def test_metrics_are_not_on_the_api_port(metered: tuple[ServerProcess, int],
                                         server: ServerProcess) -> None:
    for api in (metered[0], server):  # with keys and without
        root = api.base_url.removesuffix("/v1")
        response = httpx.get(f"{root}/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "Invalid URL (GET /metrics)"


def test_metrics_port_counts_runs(metered: tuple[ServerProcess, int],
                                  fake_model: FakeModelServer) -> None:
    server, port = metered
    assert f"metrics on http://127.0.0.1:{port}/metrics" in server.log()
    client = OpenAI(base_url=server.base_url, api_key="key-alpha", max_retries=0)
    assistant, _ = scripted_assistant(client, fake_model, Reply("counted"))
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "x"}]})
    assert run.status == "completed"

    response = httpx.get(f"http://127.0.0.1:{port}/metrics")  # no key: the port is private
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert _sample(response.text, 'vtai_runs{status="completed"}') >= 1
    assert _sample(response.text, 'vtai_runs_finished_total{status="completed"}') >= 1
    assert _sample(response.text, "vtai_queue_depth") == 0
