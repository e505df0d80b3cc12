"""Limits and safe defaults: every bad or oversized request gets a clear 4xx in OpenAI's
shape, and nothing stored changes."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import scripted_assistant, upload
from tests.conftest import BACKENDS, start_server
from tests.support import ServerProcess, free_port
from vtai.testing import FakeModelServer, Hang

SMALL_LIMITS = {
    "VTAI_MAX_REQUEST_BYTES": "20000", "VTAI_MAX_MESSAGE_CHARS": "100",
    "VTAI_MAX_CONTENT_PARTS": "2", "VTAI_MAX_ATTACHMENTS": "1",
    "VTAI_MAX_FUNCTION_PARAMETERS_BYTES": "200", "VTAI_MAX_ACTIVE_RUNS_PER_PROJECT": "1",
    "VTAI_MAX_FILE_BYTES": "50000", "VTAI_CORS_ORIGINS": "http://app.example",
    "VTAI_MAX_BATCH_FILES": "2", "VTAI_MAX_HEADER_BYTES": "8192",
}


@pytest.fixture(scope="module", params=BACKENDS)
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            fake_model: FakeModelServer) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("limits"), request.param,
                           fake_model, SMALL_LIMITS)


def sdk(server: ServerProcess, key: str = "x") -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_request_body_limit(limited: ServerProcess) -> None:
    response = httpx.post(f"{limited.base_url}/assistants",
                          json={"model": "m", "instructions": "x" * 30000})
    assert response.status_code == 413
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    # uploads have their own, larger limit
    client = sdk(limited)
    assert client.files.create(file=("a.bin", b"x" * 40000), purpose="assistants").bytes == 40000
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=("b.bin", b"x" * 60000), purpose="assistants")
    assert err.value.status_code == 413


def raw_get(server: ServerProcess, headers: bytes, path: str = "/healthz") -> tuple[int, bytes]:
    """GET with ``headers`` (lines ending in CRLF) on a socket of its own: the status and the
    body of the answer (the server closes the connection after it, or the client does)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        # the server may answer and stop reading before all is sent: its answer is read below
        with contextlib.suppress(OSError):
            sock.sendall(request + headers + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def many_headers(total: int) -> bytes:
    line = b"X-Pad-%06d: " + b"a" * 1000 + b"\r\n"
    return b"".join(line % i for i in range(total // len(line % 0) + 1))


def test_request_headers_are_bounded(server: ServerProcess) -> None:
    for headers in (many_headers(1024 * 1024), b"X-Big: " + b"a" * 1024 * 1024 + b"\r\n"):
        status, body = raw_get(server, headers)
        assert status == 431
        assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    # the default bound (64 KiB) leaves room for large headers
    assert raw_get(server, many_headers(32 * 1024))[0] == 200
    # and the server goes on, on a connection kept alive too
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(3):
            assert client.get("/assistants", headers={"x-pad": "a" * 4000}).status_code == 200


def test_header_bound_setting(limited: ServerProcess) -> None:
    assert raw_get(limited, many_headers(32 * 1024))[0] == 431  # VTAI_MAX_HEADER_BYTES: 8 KiB
    assert raw_get(limited, many_headers(4 * 1024))[0] == 200


def test_message_limits(limited: ServerProcess) -> None:
    client = sdk(limited)
    thread = client.beta.threads.create()
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.messages.create(thread.id, role="user", content="x" * 101)
    assert err.value.body["param"] == "content"
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content=[
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
            {"type": "text", "text": "c"}])
    files = [upload(client), upload(client)]
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.messages.create(thread.id, role="user", content="hi", attachments=[
            {"file_id": f, "tools": [{"type": "file_search"}]} for f in files])
    assert err.value.body["param"] == "attachments"
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.create(messages=[{"role": "user", "content": "y" * 101}])
    assert err.value.body["param"] == "messages[0].content"
    assert list(client.beta.threads.messages.list(thread.id)) == []
    client.beta.threads.messages.create(thread.id, role="user", content="x" * 100)


def test_function_schema_limit(limited: ServerProcess) -> None:
    big = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20)}}
    with pytest.raises(openai.BadRequestError) as err:
        sdk(limited).beta.assistants.create(
            model="m", tools=[{"type": "function", "function": {"name": "f",
                                                                  "parameters": big}}])
    assert err.value.body["param"] == "tools[0].function.parameters"


def test_files_per_batch_limit(limited: ServerProcess) -> None:
    client = sdk(limited)
    files = [upload(client, f"f{i}.txt") for i in range(3)]
    stores_before = [s.id for s in client.vector_stores.list()]
    store = client.vector_stores.create(name="limited")
    for param, call in (
        ("file_ids", lambda: client.vector_stores.file_batches.create(store.id, file_ids=files)),
        ("files", lambda: client.vector_stores.file_batches.create(
            store.id, files=[{"file_id": f} for f in files])),
        ("file_ids", lambda: client.vector_stores.create(file_ids=files)),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            call()
        assert err.value.body["param"] == param
        assert err.value.body["message"] == (
            f"Invalid '{param}': array too long. Expected an array with maximum length 2, "
            "but got an array with length 3 instead.")
    assert [s.id for s in client.vector_stores.list()] == [store.id, *stores_before]
    assert list(client.vector_stores.files.list(store.id)) == []
    batch = client.vector_stores.file_batches.create(store.id, file_ids=files[:2])
    assert batch.file_counts.total == 2


def test_active_runs_per_project(limited: ServerProcess, fake_model: FakeModelServer) -> None:
    client = sdk(limited)
    assistant, _ = scripted_assistant(client, fake_model, Hang(20))
    first = client.beta.threads.create_and_run(assistant_id=assistant.id)
    with pytest.raises(openai.RateLimitError) as err:
        client.beta.threads.create_and_run(assistant_id=assistant.id)
    assert err.value.response.headers["retry-after"]
    client.beta.threads.runs.cancel(first.id, thread_id=first.thread_id)


def test_cors_only_for_configured_origins(limited: ServerProcess,
                                          server: ServerProcess) -> None:
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(f"{limited.base_url}/assistants", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "http://app.example"
    other = httpx.options(f"{limited.base_url}/assistants",
                          headers={**preflight, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    default = httpx.get(f"{server.base_url}/assistants", headers={"Origin": "http://app.example"})
    assert "access-control-allow-origin" not in default.headers


@pytest.fixture(scope="module")
def rate_limited(tmp_path_factory: pytest.TempPathFactory,
                 fake_model: FakeModelServer) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("rate"), "sqlite", fake_model,
                           {"VTAI_RATE_LIMIT_PER_MINUTE": "5",
                            "VTAI_API_KEYS": "a:key-a,b:key-b,c:key-c"})


def test_rate_limit_per_key(rate_limited: ServerProcess) -> None:
    a, b = sdk(rate_limited, "key-a"), sdk(rate_limited, "key-b")
    for _ in range(5):
        a.beta.assistants.list()
    with pytest.raises(openai.RateLimitError) as err:
        a.beta.assistants.list()
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert err.value.body["code"] == "rate_limit_exceeded"
    b.beta.assistants.list()  # another key has its own budget


def test_a_rate_limited_upload_is_refused_before_its_body(rate_limited: ServerProcess) -> None:
    from tests.api.test_auth import UPLOAD_BYTES, Upload

    client = sdk(rate_limited, "key-c")
    for _ in range(5):
        client.beta.assistants.list()
    upload = Upload()
    response = upload.post(rate_limited, "key-c")
    assert response.status_code == 429 and "retry-after" in response.headers
    assert upload.sent < UPLOAD_BYTES // 3, f"sent {upload.sent} bytes before the answer"


def test_public_bind_without_keys_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("public")
    result = subprocess.run(
        [sys.executable, "-m", "vtai.cli", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir), "VTAI_OLLAMA_PROBE": "false"})
    assert result.returncode != 0
    assert "refusing to serve 0.0.0.0 with no API keys" in result.stdout + result.stderr
