"""Fixtures: real servers on SQLite and on PostgreSQL, driven by the official openai SDK."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support import ServerProcess, postgres_database, postgres_reachable

BACKENDS = ["sqlite", "postgres"]
_pg_ok: bool | None = None


def require_postgres() -> None:
    global _pg_ok
    if _pg_ok is None:
        _pg_ok = postgres_reachable()
    if not _pg_ok:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI but is unreachable")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable: PostgreSQL tests skipped")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """A test that failed waiting (pytest-timeout, or a client's timeout) reports what each
    running server was doing: every thread's stack, from the end of its log."""
    report = yield
    if report.failed and "Timeout" in str(report.longrepr):  # type: ignore[attr-defined]
        for server in list(ServerProcess.running):
            report.sections.append(  # type: ignore[attr-defined]
                (f"server on port {server.port}: stacks", server.stacks()))
    return report


@pytest.fixture(scope="session")
def fake_model() -> Iterator[object]:
    from vtai.testing import FakeModelServer

    # As llama-cpp-python's server: an assistant message with "content": null is a 500.
    with FakeModelServer(refuse_null_content=True) as fm:
        yield fm


def start_server(stack: ExitStack, tmp: Path, backend: str, fake_model: object | None,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 python: str = sys.executable) -> ServerProcess:
    """A server on ``backend``; its upstream is ``fake_model`` unless that is None;
    ``python`` runs it (a wrapper may run it as another user)."""
    server_env = {"VTAI_UPSTREAM_MAX_RETRIES": "2", **(env or {})}
    if fake_model is not None:
        server_env["VTAI_UPSTREAM_BASE_URL"] = fake_model.base_url  # type: ignore[attr-defined]
        server_env["VTAI_UPSTREAM_API_KEY"] = "fake"
    if backend == "postgres":
        require_postgres()
        server_env["VTAI_DATABASE_URL"] = stack.enter_context(postgres_database())
    server = ServerProcess(tmp, server_env, args, python)
    if fake_model is None:
        for name in ("VTAI_UPSTREAM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
            server.env.pop(name, None)
    server.start()
    stack.callback(server.stop)
    return server


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           fake_model: object) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp(request.param), request.param,
                           fake_model)


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
