"""Background responses across processes on PostgreSQL: executed by workers of their own,
streamed and cancelled from any server, resumed after their worker is killed."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from openai import OpenAI

from tests.api.responses_support import scripted_model
from tests.scale.conftest import Cluster, slow
from tests.support import WorkerProcess
from vtai.testing import FakeModelServer, Reply


def _wait(client: OpenAI, response_id: str, statuses: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in statuses or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def _worker_of(cluster: Cluster, response_id: str) -> WorkerProcess:
    deadline = time.monotonic() + 10
    while (worker := cluster.worker_of(response_id, "response")) is None:
        assert time.monotonic() < deadline, "no worker claimed the response"
        time.sleep(0.05)
    return worker


def _events(url: str, **params: Any) -> list[dict[str, Any]]:
    events = []
    with httpx.stream("GET", url, params=params, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def test_a_streamed_response_is_served_by_a_worker_elsewhere(
        cluster: Cluster, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, Reply("served across processes", chunk_size=6))
    with cluster.client(1).responses.stream(model=model, input="hi") as stream:
        events = [event for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "served across processes"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert cluster.worker_of(final.id, "response") is not None
    # awaited (neither streamed nor in the background) through the same events
    model = scripted_model(fake_model, Reply("awaited"))
    assert cluster.client(0).responses.create(model=model, input="x").output_text == "awaited"


def test_cancel_from_another_server(cluster: Cluster, fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, slow(200, 0.05))
    response = cluster.client(0).responses.create(model=model, input="talk", background=True)
    _worker_of(cluster, response.id)
    _wait(cluster.client(0), response.id, {"in_progress"})
    started = time.monotonic()
    assert cluster.client(1).responses.cancel(response.id).status == "cancelled"
    events = _events(f"{cluster.servers[0].base_url}/responses/{response.id}", stream="true")
    assert time.monotonic() - started < 10  # the stream ended: its worker stopped
    assert events and events[0]["type"] == "response.created"
    assert not any(e["type"] == "response.completed" for e in events)
    time.sleep(0.5)
    assert cluster.client(0).responses.retrieve(response.id).status == "cancelled"


def test_a_killed_workers_response_is_resumed(cluster: Cluster,
                                              fake_model: FakeModelServer) -> None:
    model = scripted_model(fake_model, slow(100, 0.05), Reply("finished after recovery"))
    client = cluster.client(0)
    response = client.responses.create(model=model, input="go", background=True)
    victim = _worker_of(cluster, response.id)
    url = f"{cluster.servers[1].base_url}/responses/{response.id}"
    assert _live_prefix(url)[-1]["type"] == "response.output_text.delta"  # mid-answer
    victim.kill()
    index = cluster.workers.index(victim)
    final = _wait(client, response.id, {"completed", "failed"})
    assert final.status == "completed", final.error
    assert final.output_text == "finished after recovery"
    assert cluster.workers[1 - index].claimed(response.id, "response")
    # the whole stream, read again: numbered without a gap, ending once
    events = _events(url, stream="true")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count("response.completed") == 1
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == \
        "finished after recovery"
    cluster.workers[index] = WorkerProcess(victim.data_dir, victim.env).start()


def _live_prefix(url: str) -> list[dict[str, Any]]:
    """The stream's events until its first text delta (the client then hangs up)."""
    events = []
    with httpx.stream("GET", url, params={"stream": "true"}, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["type"] == "response.output_text.delta":
                    break
    return events
