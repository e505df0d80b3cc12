"""API keys: 401 without a valid key, and each key's project sees only its own objects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import BACKENDS, start_server
from tests.support import ServerProcess


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
