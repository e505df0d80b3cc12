"""The cluster the scale-out tests share the shape of: on one PostgreSQL database, two
`vtai serve --no-worker` and two `vtai worker` processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from openai import OpenAI

from tests.conftest import require_postgres
from tests.support import ServerProcess, WorkerProcess, free_port, postgres_database
from vtai.testing import FakeModelServer, Reply


@dataclass
class Cluster:
    servers: list[ServerProcess]
    workers: list[WorkerProcess]
    metrics_port: int  # the first server's

    def client(self, index: int) -> OpenAI:
        return OpenAI(base_url=self.servers[index].base_url, api_key="x", max_retries=0)

    def worker_of(self, work_id: str, kind: str = "run") -> WorkerProcess | None:
        return next((w for w in self.workers if w.claimed(work_id, kind)), None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            fake_model: FakeModelServer) -> Iterator[Cluster]:
    require_postgres()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        data_dir = tmp_path_factory.mktemp("cluster")
        env = {"VTAI_DATABASE_URL": url, "VTAI_UPSTREAM_BASE_URL": fake_model.base_url,
               "VTAI_UPSTREAM_API_KEY": "fake", "VTAI_RUN_LEASE_SECONDS": "2",
               "VTAI_UPSTREAM_MAX_RETRIES": "0", "VTAI_SHUTDOWN_GRACE": "1"}
        metrics_port = free_port()
        servers = []
        for args in (("--metrics-port", str(metrics_port)), ()):
            server = ServerProcess(data_dir, env, ("--no-worker", *args)).start()
            stack.callback(server.stop)
            servers.append(server)
        cluster = Cluster(servers, [], metrics_port)
        # tests replace workers they stop or kill: stop whichever are current at the end
        stack.callback(lambda: [worker.stop() for worker in cluster.workers])
        cluster.workers.extend(WorkerProcess(data_dir, env).start() for _ in range(2))
        yield cluster


def slow(words: int, delay: float) -> Reply:
    return Reply(" ".join(f"w{i}" for i in range(words)), chunk_delay=delay)
