"""API keys: 401 without a valid key, and each key's project sees only its own objects and
can refer to no other project's."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import WEATHER_TOOL, scripted_assistant, upload
from tests.conftest import BACKENDS, require_postgres, start_server
from tests.proxy import TcpProxy
from tests.support import ServerProcess, postgres_database
from vtai.testing import Call, FakeModelServer, ToolCalls


@pytest.fixture(scope="module", params=BACKENDS)
def keyed_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 fake_model: object) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp(f"auth-{request.param}"),
                           request.param, fake_model,
                           {"VTAI_API_KEYS": "alpha:key-alpha,beta:key-beta"})


def sdk(server: ServerProcess, key: str) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_missing_or_wrong_key_is_401(keyed_server: ServerProcess) -> None:
    response = httpx.get(f"{keyed_server.base_url}/assistants")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(keyed_server, "key-wrong").beta.assistants.list()
    assert err.value.body["code"] == "invalid_api_key"
    assert "key-wrong" not in err.value.body["message"]  # keys are never echoed whole


UPLOAD_BYTES = 50 * 1024 * 1024
CHUNK = b"x" * 65536


class Upload:
    """A multipart upload of UPLOAD_BYTES, made as it is sent; ``sent`` counts the file's bytes
    handed to the connection so far."""

    BOUNDARY = "vtai-edge-test"

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        part = f"--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="
        yield f'{part}"purpose"\r\n\r\nassistants\r\n'.encode()
        yield (f'{part}"file"; filename="big.bin"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        while self.sent < UPLOAD_BYTES:
            self.sent += len(CHUNK)
            yield CHUNK
        yield f"\r\n--{self.BOUNDARY}--\r\n".encode()

    def post(self, server: ServerProcess, key: str | None) -> httpx.Response:
        headers = {"content-type": f"multipart/form-data; boundary={self.BOUNDARY}"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return httpx.post(f"{server.base_url}/files", content=iter(self), headers=headers,
                          timeout=60)


@pytest.mark.parametrize("key", [None, "key-wrong"])
def test_upload_without_a_valid_key_is_refused_before_its_body(
        keyed_server: ServerProcess, key: str | None) -> None:
    upload = Upload()
    started = time.monotonic()
    response = upload.post(keyed_server, key)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert time.monotonic() - started < 5
    # answered at the start: what the client got to send is what the sockets' buffers took
    # (a few MB on loopback), far from the whole
    assert upload.sent < UPLOAD_BYTES // 3, f"sent {upload.sent} bytes before the answer"
    assert httpx.get(f"{keyed_server.base_url}/files",
                     headers={"authorization": "Bearer key-alpha"}).status_code == 200


def test_upload_with_a_valid_key_is_read_whole(keyed_server: ServerProcess) -> None:
    upload = Upload()
    response = upload.post(keyed_server, "key-alpha")
    assert response.status_code == 200, response.text
    assert upload.sent == UPLOAD_BYTES
    file_id = response.json()["id"]
    assert sdk(keyed_server, "key-alpha").files.retrieve(file_id).bytes == UPLOAD_BYTES
    sdk(keyed_server, "key-alpha").files.delete(file_id)


def test_health_and_docs_need_no_key(keyed_server: ServerProcess) -> None:
    root = keyed_server.base_url.removesuffix("/v1")
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert httpx.get(root + path).status_code == 200, path
    unknown = httpx.get(f"{keyed_server.base_url}/nothing-here")
    assert unknown.status_code == 401  # under /v1 the key comes first, known URL or not


def test_projects_are_isolated(keyed_server: ServerProcess) -> None:
    alpha, beta = sdk(keyed_server, "key-alpha"), sdk(keyed_server, "key-beta")
    assistant = alpha.beta.assistants.create(model="m", name="alpha's")
    thread = alpha.beta.threads.create(messages=[{"role": "user", "content": "secret"}])
    message = next(iter(alpha.beta.threads.messages.list(thread.id)))

    assert assistant.id not in {a.id for a in beta.beta.assistants.list()}
    assert assistant.id in {a.id for a in alpha.beta.assistants.list()}
    for call in (
        lambda: beta.beta.assistants.retrieve(assistant.id),
        lambda: beta.beta.assistants.update(assistant.id, name="stolen"),
        lambda: beta.beta.assistants.delete(assistant.id),
        lambda: beta.beta.threads.retrieve(thread.id),
        lambda: beta.beta.threads.update(thread.id, metadata={"x": "y"}),
        lambda: beta.beta.threads.delete(thread.id),
        lambda: beta.beta.threads.messages.list(thread.id),
        lambda: beta.beta.threads.messages.create(thread.id, role="user", content="hi"),
        lambda: beta.beta.threads.messages.retrieve(message.id, thread_id=thread.id),
        lambda: beta.beta.threads.messages.update(message.id, thread_id=thread.id,
                                                  metadata={"x": "y"}),
        lambda: beta.beta.threads.messages.delete(message.id, thread_id=thread.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    # nothing the other project tried changed anything
    assert alpha.beta.assistants.retrieve(assistant.id).name == "alpha's"
    assert [m.id for m in alpha.beta.threads.messages.list(thread.id)] == [message.id]


def _leaks(calls: dict[str, Callable[[], Any]]) -> list[str]:
    """Names of the calls that did not answer 404."""
    leaked = []
    for name, call in calls.items():
        try:
            call()
        except openai.NotFoundError:
            continue
        except openai.APIStatusError as err:
            leaked.append(f"{name}: {err.status_code}")
            continue
        leaked.append(f"{name}: succeeded")
    return leaked


def test_no_cross_project_reference(keyed_server: ServerProcess,
                                    fake_model: FakeModelServer) -> None:
    """Every request of one project that names another project's vector store, file, batch,
    assistant, thread or run is a 404, and changes nothing in either project."""
    alpha, beta = sdk(keyed_server, "key-alpha"), sdk(keyed_server, "key-beta")
    file_id = upload(alpha, "secret.txt", b"The launch date is the ninth of March.")
    batch_file = upload(alpha, "other.txt", b"The budget is forty thousand.")
    store = alpha.vector_stores.create(name="private")
    alpha.vector_stores.files.create_and_poll(file_id, vector_store_id=store.id)
    batch = alpha.vector_stores.file_batches.create_and_poll(store.id, file_ids=[batch_file])
    assistant, _ = scripted_assistant(alpha, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "Oslo"})]),
                                      tools=[WEATHER_TOOL])
    run = alpha.beta.threads.create_and_run_poll(assistant_id=assistant.id)
    assert run.status == "requires_action" and run.required_action is not None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    thread_id = run.thread_id

    own_file = upload(beta, "mine.txt", b"nothing secret")
    own_store = beta.vector_stores.create(name="mine")
    own_assistant = beta.beta.assistants.create(model="m")
    own_thread = beta.beta.threads.create()

    store_ref = {"file_search": {"vector_store_ids": [store.id]}}
    code_ref = {"code_interpreter": {"file_ids": [file_id]}}
    inline_ref = {"file_search": {"vector_stores": [{"file_ids": [file_id]}]}}
    attached = [{"file_id": file_id, "tools": [{"type": "file_search"}]}]
    image: Any = [{"type": "image_file", "image_file": {"file_id": file_id}}]
    vs, fb = beta.vector_stores, beta.vector_stores.file_batches
    threads, runs = beta.beta.threads, beta.beta.threads.runs
    calls: dict[str, Callable[[], Any]] = {
        "file retrieve": lambda: beta.files.retrieve(file_id),
        "file content": lambda: beta.files.content(file_id),
        "file delete": lambda: beta.files.delete(file_id),
        "store retrieve": lambda: vs.retrieve(store.id),
        "store modify": lambda: vs.update(store.id, name="stolen"),
        "store search": lambda: vs.search(store.id, query="launch date"),
        "store delete": lambda: vs.delete(store.id),
        "store create, foreign file": lambda: vs.create(file_ids=[file_id]),
        "store files list": lambda: vs.files.list(store.id),
        "store file add to foreign store": lambda: vs.files.create(
            vector_store_id=store.id, file_id=own_file),
        "store file add, foreign file": lambda: vs.files.create(
            vector_store_id=own_store.id, file_id=file_id),
        "store file retrieve": lambda: vs.files.retrieve(file_id, vector_store_id=store.id),
        "store file retrieve via own store": lambda: vs.files.retrieve(
            file_id, vector_store_id=own_store.id),
        "store file update": lambda: vs.files.update(file_id, vector_store_id=store.id,
                                                     attributes={"x": "y"}),
        "store file content": lambda: vs.files.content(file_id, vector_store_id=store.id),
        "store file delete": lambda: vs.files.delete(file_id, vector_store_id=store.id),
        "store file delete via own store": lambda: vs.files.delete(
            file_id, vector_store_id=own_store.id),
        "batch create in foreign store": lambda: fb.create(store.id, file_ids=[own_file]),
        "batch create, foreign file_ids": lambda: fb.create(own_store.id,
                                                            file_ids=[own_file, file_id]),
        "batch create, foreign files": lambda: fb.create(own_store.id,
                                                         files=[{"file_id": file_id}]),
        "batch retrieve": lambda: fb.retrieve(batch.id, vector_store_id=store.id),
        "batch retrieve via own store": lambda: fb.retrieve(batch.id,
                                                            vector_store_id=own_store.id),
        "batch cancel": lambda: fb.cancel(batch.id, vector_store_id=store.id),
        "batch cancel via own store": lambda: fb.cancel(batch.id, vector_store_id=own_store.id),
        "batch files": lambda: fb.list_files(batch.id, vector_store_id=store.id),
        "batch files via own store": lambda: fb.list_files(batch.id,
                                                           vector_store_id=own_store.id),
        "assistant retrieve": lambda: beta.beta.assistants.retrieve(assistant.id),
        "assistant create, foreign store": lambda: beta.beta.assistants.create(
            model="m", tool_resources=store_ref),
        "assistant create, foreign code file": lambda: beta.beta.assistants.create(
            model="m", tool_resources=code_ref),
        "assistant create, inline store of foreign file": lambda: beta.beta.assistants.create(
            model="m", tool_resources=inline_ref),
        "assistant update, foreign store": lambda: beta.beta.assistants.update(
            own_assistant.id, tool_resources=store_ref),
        "assistant update, foreign code file": lambda: beta.beta.assistants.update(
            own_assistant.id, tool_resources=code_ref),
        "assistant update, inline store of foreign file": lambda: beta.beta.assistants.update(
            own_assistant.id, tool_resources=inline_ref),
        "thread retrieve": lambda: threads.retrieve(thread_id),
        "thread create, foreign store": lambda: threads.create(tool_resources=store_ref),
        "thread create, foreign code file": lambda: threads.create(tool_resources=code_ref),
        "thread create, inline store of foreign file": lambda: threads.create(
            tool_resources=inline_ref),
        "thread create, foreign attachment": lambda: threads.create(messages=[
            {"role": "user", "content": "hi", "attachments": attached}]),
        "thread create, foreign image": lambda: threads.create(messages=[
            {"role": "user", "content": image}]),
        "thread update, foreign store": lambda: threads.update(own_thread.id,
                                                               tool_resources=store_ref),
        "thread update, foreign code file": lambda: threads.update(own_thread.id,
                                                                   tool_resources=code_ref),
        "thread update, inline store of foreign file": lambda: threads.update(
            own_thread.id, tool_resources=inline_ref),
        "message create, foreign attachment": lambda: threads.messages.create(
            own_thread.id, role="user", content="hi", attachments=attached),
        "message create, foreign image": lambda: threads.messages.create(
            own_thread.id, role="user", content=image),
        "messages list": lambda: threads.messages.list(thread_id),
        "run create, foreign assistant": lambda: runs.create(own_thread.id,
                                                             assistant_id=assistant.id),
        "run stream, foreign assistant": lambda: runs.create(
            own_thread.id, assistant_id=assistant.id, stream=True),
        "run create, foreign thread": lambda: runs.create(thread_id,
                                                          assistant_id=own_assistant.id),
        "run create, foreign attachment": lambda: runs.create(
            own_thread.id, assistant_id=own_assistant.id, additional_messages=[
                {"role": "user", "content": "hi", "attachments": attached}]),
        "thread and run, foreign assistant": lambda: threads.create_and_run(
            assistant_id=assistant.id),
        "thread and run, foreign store": lambda: threads.create_and_run(
            assistant_id=own_assistant.id, tool_resources=store_ref),
        "thread and run, foreign code file": lambda: threads.create_and_run(
            assistant_id=own_assistant.id, tool_resources=code_ref),
        "thread and run, thread's foreign store": lambda: threads.create_and_run(
            assistant_id=own_assistant.id, thread={"tool_resources": store_ref}),
        "thread and run, foreign attachment": lambda: threads.create_and_run(
            assistant_id=own_assistant.id,
            thread={"messages": [{"role": "user", "content": "hi", "attachments": attached}]}),
        "run retrieve": lambda: runs.retrieve(run.id, thread_id=thread_id),
        "run retrieve via own thread": lambda: runs.retrieve(run.id, thread_id=own_thread.id),
        "runs list": lambda: runs.list(thread_id),
        "run update": lambda: runs.update(run.id, thread_id=thread_id, metadata={"x": "y"}),
        "run steps": lambda: runs.steps.list(run.id, thread_id=thread_id),
        "run submit tool outputs": lambda: runs.submit_tool_outputs(
            run.id, thread_id=thread_id, tool_outputs=[{"tool_call_id": call_id,
                                                        "output": "sunny"}]),
        "run cancel": lambda: runs.cancel(run.id, thread_id=thread_id),
    }
    leaks = _leaks(calls)
    assert not leaks, "answered other than 404:\n" + "\n".join(leaks)

    # Nothing foreign is listed, and nothing of either project changed.
    assert [f.id for f in beta.files.list()] == [own_file]
    assert [s.id for s in vs.list()] == [own_store.id]
    assert list(vs.files.list(own_store.id)) == []
    assert [a.id for a in beta.beta.assistants.list()] == [own_assistant.id]
    assert beta.beta.assistants.retrieve(own_assistant.id) == own_assistant
    assert threads.retrieve(own_thread.id) == own_thread
    assert list(threads.messages.list(own_thread.id)) == []
    assert list(runs.list(own_thread.id)) == []
    kept = alpha.vector_stores.retrieve(store.id)
    assert kept.name == "private" and kept.file_counts.completed == 2
    assert {f.id for f in alpha.vector_stores.files.list(store.id)} == {file_id, batch_file}
    assert alpha.vector_stores.file_batches.retrieve(
        batch.id, vector_store_id=store.id).status == "completed"
    assert alpha.vector_stores.search(store.id, query="launch date").data
    assert alpha.files.retrieve(file_id).id == file_id
    assert alpha.beta.threads.runs.retrieve(run.id, thread_id=thread_id).status == \
        "requires_action"


def test_cli_created_key(keyed_server: ServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vtai.cli", "keys", "create", "--project", "gamma",
         "--data-dir", str(keyed_server.data_dir)],
        env=keyed_server.env, capture_output=True, text=True, check=True)
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-vtai-")
    gamma = sdk(keyed_server, key)
    created = gamma.beta.assistants.create(model="m")
    assert [a.id for a in gamma.beta.assistants.list()] == [created.id]
    with pytest.raises(openai.NotFoundError):
        sdk(keyed_server, "key-alpha").beta.assistants.retrieve(created.id)


def test_open_server_needs_no_key(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base_url}/assistants").status_code == 200
    assert "no API keys configured" in server.log()


def test_key_lookup_while_the_database_is_away_is_503(
        tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModelServer) -> None:
    """A key not known to the process is looked up in the database: while that is away the
    answer is 503 (retry), as for any request then, neither 401 nor 500."""
    require_postgres()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        proxy = TcpProxy("127.0.0.1", 5432).start()
        stack.callback(proxy.stop)
        server = start_server(
            stack, tmp_path_factory.mktemp("auth-dbfault"), "sqlite", fake_model,
            {"VTAI_DATABASE_URL": url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"),
             "VTAI_API_KEYS": "alpha:key-alpha"})
        proxy.cut()
        try:
            unknown = {"authorization": "Bearer key-unknown"}
            for send in (lambda: httpx.get(f"{server.base_url}/assistants", headers=unknown),
                         lambda: Upload().post(server, "key-unknown")):
                response = send()
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "database_unavailable"
        finally:
            proxy.resume()
        assert httpx.get(f"{server.base_url}/assistants",
                         headers={"authorization": "Bearer key-unknown"}).status_code == 401
