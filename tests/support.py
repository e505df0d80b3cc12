"""Starting real servers for tests: a `vtai serve` subprocess on a free port, and the databases
it runs on (a SQLite file, or a PostgreSQL database made for this test run)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import httpx

PG_ADMIN_DSN = os.environ.get("VTAI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_reachable(admin_dsn: str = PG_ADMIN_DSN) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin_dsn, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def postgres_database(admin_dsn: str = PG_ADMIN_DSN, prefix: str = "vtai_test"
                      ) -> Iterator[str]:
    """A fresh database (for a test run, or a benchmark); dropped afterwards. Yields its
    SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServerProcess:
    """``vtai serve`` in a subprocess, as a user starts it."""

    running: ClassVar[set[ServerProcess]] = set()  # for the failure reports (conftest.py)

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), python: str = sys.executable) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = data_dir / f"server-{self.port}.log"
        self.env = {**os.environ, "VTAI_OLLAMA_PROBE": "false", **(env or {})}
        # The server runs as users run it, not as part of a test (LiteLLM reads this one).
        self.env.pop("PYTEST_CURRENT_TEST", None)
        self.args = args
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "vtai.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        ServerProcess.running.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Until ``text`` appears in the server's log; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, f"not logged: {text!r}\n{self.log()}"
            time.sleep(0.1)

    def stacks(self, lines: int = 150) -> str:
        """The end of the server's log after it wrote every thread's stack (SIGUSR1)."""
        if self.proc is None or self.proc.poll() is not None:
            return ""
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        ServerProcess.running.discard(self)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sse_events(url: str, body: dict[str, object], timeout: float = 30.0
               ) -> list[tuple[str, object]]:
    """POST a streaming request and return its SSE events as (event name, parsed data)."""
    import json

    events: list[tuple[str, object]] = []
    with httpx.stream("POST", url, json=body, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name is not None:
                data = line.split(":", 1)[1].strip()
                events.append((name, data if data == "[DONE]" else json.loads(data)))
                name = None
    return events


class WorkerProcess:
    """``vtai worker`` in a subprocess."""

    def __init__(self, data_dir: Path, env: dict[str, str], args: tuple[str, ...] = ()
                 ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, "VTAI_OLLAMA_PROBE": "false", **env}
        self.env.pop("PYTEST_CURRENT_TEST", None)
        self.log_path = data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vtai.cli", "worker", "--data-dir", str(self.data_dir),
             *self.args],
            env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "executing runs as" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def claimed(self, work_id: str, kind: str = "run") -> bool:
        """Whether this worker claimed the run (or the response: ``kind``)."""
        return f"claimed {kind} {work_id}" in self.log()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM, as a process manager stops it; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None
