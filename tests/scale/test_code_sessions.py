"""The code interpreter across workers, on PostgreSQL: `vtai serve --no-worker` and two
`vtai worker` processes. With local kernels, a thread's next run goes to the worker holding
its kernel, and when that worker is gone the new kernel's first logs say the state was reset;
with kernels on a Jupyter gateway, any worker continues the thread's kernel, across a change
of worker and a worker's restart."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.api.code_support import kernel_gateway, need
from tests.api.runs_support import scripted_assistant
from tests.conftest import require_postgres
from tests.support import ServerProcess, WorkerProcess, postgres_database
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

# Fork and memory bombs, and 3-second time limits: run alone, after the parallel tests
# (scripts/test), so another worker's load does not decide them.
pytestmark = pytest.mark.serial

LIMITS = {"VTAI_CODE_TIMEOUT": "20", "VTAI_CODE_CPU_SECONDS": "20", "VTAI_CODE_POOL_SIZE": "1",
          "VTAI_CODE_MEMORY_MB": "1024", "VTAI_CODE_DISK_MB": "64",
          "VTAI_CODE_MAX_PROCESSES": "48"}


@dataclass
class Cluster:
    server: ServerProcess
    data_dir: Path
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def client(self) -> OpenAI:
        return OpenAI(base_url=self.server.base_url, api_key="x", max_retries=0)

    def add_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.data_dir, self.env).start()
        self.workers.append(worker)
        return worker

    def worker_of(self, run_id: str) -> WorkerProcess:
        [worker] = [w for w in self.workers if w.claimed(run_id)]
        return worker


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path,
            fake_model: FakeModelServer) -> Iterator[Cluster]:
    require_postgres()
    need(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    with ExitStack() as stack:
        env = {"VTAI_DATABASE_URL": stack.enter_context(postgres_database()),
               "VTAI_UPSTREAM_BASE_URL": fake_model.base_url, "VTAI_UPSTREAM_API_KEY": "fake",
               "VTAI_RUN_LEASE_SECONDS": "2", "VTAI_UPSTREAM_MAX_RETRIES": "0",
               "VTAI_SHUTDOWN_GRACE": "1", **LIMITS}
        if request.param == "gateway":
            gateway = stack.enter_context(kernel_gateway(tmp_path / "gateway", LIMITS))
            env.update(gateway.server_env())
        server = ServerProcess(tmp_path, env, ("--no-worker",)).start()
        stack.callback(server.stop)
        cluster = Cluster(server, tmp_path, env)
        stack.callback(lambda: [worker.stop() for worker in cluster.workers])
        for _ in range(2):
            cluster.add_worker()
        yield cluster


def run_code(client: OpenAI, fake_model: FakeModelServer, thread_id: str, code: str
             ) -> tuple[Any, str]:
    """A run on the thread whose model runs ``code``: the run, and the call's logs."""
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("code_interpreter", {"code": code})]),
                                      Reply("Done."), tools=[{"type": "code_interpreter"}])
    client.beta.threads.messages.create(thread_id, role="user", content="Run it.")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id,
                                                   assistant_id=assistant.id,
                                                   poll_interval_ms=100, timeout=120)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id)
    [call] = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    return run, "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
def test_local_kernel_runs_go_to_the_worker_holding_it(cluster: Cluster,
                                                       fake_model: FakeModelServer) -> None:
    client = cluster.client()
    thread = client.beta.threads.create().id
    run, logs = run_code(client, fake_model, thread, "x = 41")
    holder = cluster.worker_of(run.id)
    for expected in ("42", "43", "44"):
        run, logs = run_code(client, fake_model, thread, "x += 1\nprint(x)")
        assert logs == f"{expected}\n"
        assert cluster.worker_of(run.id) is holder
    holder.stop()
    run, logs = run_code(client, fake_model, thread, "print('x' in globals())")
    assert cluster.worker_of(run.id) is not holder
    assert logs == (
        "Note: this is a new Python session: the previous one ended when the worker that "
        "held it stopped, so variables, imports and files written in /mnt/data by earlier "
        "calls are gone.\nFalse\n")


@pytest.mark.parametrize("cluster", ["gateway"], indirect=True)
def test_gateway_kernel_survives_a_change_of_worker(cluster: Cluster,
                                                    fake_model: FakeModelServer) -> None:
    client = cluster.client()
    thread = client.beta.threads.create().id
    source = client.files.create(file=("in.csv", b"a\n1\n2\n"), purpose="assistants")
    client.beta.threads.update(thread, tool_resources={
        "code_interpreter": {"file_ids": [source.id]}})
    run, logs = run_code(client, fake_model, thread,
                         "x = 41\n_ = open('/mnt/data/in.csv', 'a').write('3\\n')")
    first = cluster.worker_of(run.id)
    first.stop()  # run 1 on worker A, stop A
    run, logs = run_code(client, fake_model, thread,
                         "import os\nprint(x + 1, repr(open('/mnt/data/in.csv').read()), "
                         "os.listdir('/mnt/data'))")
    second = cluster.worker_of(run.id)
    assert second is not first
    # The kernel's files went nowhere, and the input file was not placed again over them.
    assert logs == "42 'a\\n1\\n2\\n3\\n' ['in.csv']\n"
    # A worker's restart: a new process, the other one stopped.
    cluster.add_worker()
    second.stop()
    run, logs = run_code(client, fake_model, thread, "x += 2\nprint(x)")
    assert cluster.worker_of(run.id) not in (first, second)
    assert logs == "43\n"
