"""Scale-out on PostgreSQL: two `vtai serve --no-worker` and two `vtai worker` processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.api.runs_support import (
    event_names,
    scripted_assistant,
    wait_for_answer,
    wait_for_status,
)
from tests.scale.conftest import Cluster, slow
from tests.support import WorkerProcess, free_port, sse_events
from vtai.testing import FakeModelServer, Reply

TEXT_EVENTS = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress", "thread.message.delta",
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done",
]


def test_runs_spread_across_workers(cluster: Cluster, fake_model: FakeModelServer) -> None:
    client = cluster.client(0)
    assistant, model = scripted_assistant(client, fake_model)
    fake_model.script(model, *[slow(10, 0.05) for _ in range(6)])
    runs = []
    for i in range(6):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": str(i)}])
        runs.append(client.beta.threads.runs.create(thread_id=thread.id,
                                                    assistant_id=assistant.id))
    finished = [wait_for_status(cluster.client(i % 2), r.thread_id, r.id, {"completed"})
                for i, r in enumerate(runs)]
    assert [r.status for r in finished] == ["completed"] * 6
    owners = {cluster.workers.index(w) for r in runs if (w := cluster.worker_of(r.id))}
    assert owners == {0, 1}


def test_stream_from_one_server_while_a_worker_executes(cluster: Cluster,
                                                       fake_model: FakeModelServer) -> None:
    client = cluster.client(1)
    assistant, _ = scripted_assistant(client, fake_model, Reply("served across processes"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    events = sse_events(f"{cluster.servers[1].base_url}/threads/{thread.id}/runs",
                        {"assistant_id": assistant.id, "stream": True})
    assert event_names(events) == TEXT_EVENTS
    text = "".join(d["delta"]["content"][0]["text"]["value"]  # type: ignore[index]
                   for n, d in events if n == "thread.message.delta")
    assert text == "served across processes"
    assert cluster.worker_of(events[0][1]["id"]) is not None  # type: ignore[index]


def test_cancel_from_another_server(cluster: Cluster, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(cluster.client(0), fake_model, slow(200, 0.05))
    thread = cluster.client(0).beta.threads.create(
        messages=[{"role": "user", "content": "talk"}])
    run = cluster.client(0).beta.threads.runs.create(thread_id=thread.id,
                                                     assistant_id=assistant.id)
    wait_for_status(cluster.client(0), thread.id, run.id, {"in_progress"})
    wait_for_answer(cluster.client(0), thread.id)
    started = time.monotonic()
    cluster.client(1).beta.threads.runs.cancel(run.id, thread_id=thread.id)
    final = wait_for_status(cluster.client(1), thread.id, run.id, {"cancelled"}, timeout=10)
    assert final.status == "cancelled" and time.monotonic() - started < 5
    message = next(iter(cluster.client(0).beta.threads.messages.list(thread.id)))
    assert message.status == "incomplete"


def test_killed_worker_run_is_resumed(cluster: Cluster, fake_model: FakeModelServer,
                                      tmp_path: Path) -> None:
    client = cluster.client(0)
    assistant, model = scripted_assistant(client, fake_model, slow(100, 0.05),
                                          Reply("finished after recovery"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    wait_for_status(client, thread.id, run.id, {"in_progress"})
    deadline = time.monotonic() + 10
    while (victim := cluster.worker_of(run.id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim is not None
    wait_for_answer(client, thread.id)  # mid-stream
    victim.kill()
    survivor_index = 1 - cluster.workers.index(victim)
    final = wait_for_status(client, thread.id, run.id, {"completed", "failed"}, timeout=30)
    assert final.status == "completed", final.last_error
    assert cluster.workers[survivor_index].claimed(run.id)
    messages = list(client.beta.threads.messages.list(thread.id, order="asc"))
    assert [m.role for m in messages] == ["user", "assistant"]  # no duplicate, no half one
    assert messages[1].content[0].text.value == "finished after recovery"
    assert messages[1].status == "completed"
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id))
    assert [s.status for s in steps] == ["completed"]
    assert len(fake_model.requests(model)) == 2
    # a replacement worker keeps the cluster at two
    cluster.workers[cluster.workers.index(victim)] = WorkerProcess(
        victim.data_dir, victim.env).start()


def test_sigterm_hands_back_a_long_run(cluster: Cluster, fake_model: FakeModelServer) -> None:
    client = cluster.client(1)
    assistant, _ = scripted_assistant(client, fake_model, slow(100, 0.05),
                                      Reply("finished by the other worker"))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 10
    while (stopping := cluster.worker_of(run.id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopping is not None
    index = cluster.workers.index(stopping)
    assert stopping.stop() == 0  # longer than the 1 s grace: handed back, then exit
    final = wait_for_status(client, thread.id, run.id, {"completed", "failed"}, timeout=30)
    assert final.status == "completed", final.last_error
    assert cluster.workers[1 - index].claimed(run.id)
    texts = [m.content[0].text.value for m in client.beta.threads.messages.list(thread.id)]
    assert texts == ["finished by the other worker", "go"]
    cluster.workers[index] = WorkerProcess(stopping.data_dir, stopping.env).start()


def stream_events(method: str, url: str, stop_after_deltas: int | None = None,
                  **kwargs: object) -> list[tuple[str, str]]:
    """(id, event name) of each SSE event; with ``stop_after_deltas`` the client hangs up
    after that many message deltas."""
    events: list[tuple[str, str]] = []
    event_id = ""
    with httpx.stream(method, url, timeout=30, **kwargs) as resp:  # type: ignore[arg-type]
        for line in resp.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                events.append((event_id, line[6:].strip()))
                event_id = ""
                deltas = sum(name == "thread.message.delta" for _, name in events)
                if stop_after_deltas is not None and deltas == stop_after_deltas:
                    break
    return events


def test_resume_with_last_event_id(cluster: Cluster, fake_model: FakeModelServer) -> None:
    client = cluster.client(0)
    assistant, _ = scripted_assistant(client, fake_model, slow(30, 0.03))
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    seen = stream_events("POST", f"{cluster.servers[0].base_url}/threads/{thread.id}/runs",
                         stop_after_deltas=5,
                         json={"assistant_id": assistant.id, "stream": True})
    run_id = next(iter(client.beta.threads.runs.list(thread.id))).id
    events_url = f"{cluster.servers[1].base_url}/threads/{thread.id}/runs/{run_id}/events"
    resumed = stream_events("GET", events_url, headers={"Last-Event-ID": seen[-1][0]})
    assert resumed[-1] == ("", "done")
    full = stream_events("GET", events_url)
    # what was seen plus what the resume gave is exactly the whole stream, once each
    assert seen + resumed == full
    assert event_names([(name, None) for _, name in full]) == TEXT_EVENTS


def test_metrics_and_json_logs(cluster: Cluster, fake_model: FakeModelServer,
                               tmp_path: Path) -> None:
    client = cluster.client(0)
    assistant, _ = scripted_assistant(client, fake_model, Reply("counted"))
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "x"}]})
    assert run.status == "completed"
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics").text
    completed = next(line for line in text.splitlines()
                     if line.startswith('vtai_runs{status="completed"}'))
    assert float(completed.split()[-1]) >= 1
    assert "vtai_queue_depth" in text
    # a worker with JSON logs and its own metrics port
    port = free_port()
    worker = WorkerProcess(tmp_path, {**cluster.workers[0].env, "VTAI_LOG_FORMAT": "json"},
                           ("--metrics-port", str(port))).start()
    try:
        for w in cluster.workers:
            w.stop()
        assistant, _ = scripted_assistant(client, fake_model, Reply("logged"))
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "y"}]})
        assert run.status == "completed"
        lines = [json.loads(line) for line in worker.log().splitlines()
                 if line.startswith("{")]
        mine = [line for line in lines if line.get("run_id") == run.id]
        assert any(line["thread_id"] == run.thread_id and line["level"] == "INFO"
                   for line in mine)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'vtai_runs_finished_total{status="completed"} 1.0' in scraped
        assert "vtai_upstream_seconds_count" in scraped
    finally:
        worker.stop()
        for i, w in enumerate(cluster.workers):
            cluster.workers[i] = WorkerProcess(w.data_dir, w.env).start()
