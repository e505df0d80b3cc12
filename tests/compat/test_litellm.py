"""The optional LiteLLM route (``litellm/<model>``), with vtai-assistants[litellm] in its own venv.

LiteLLM pins its own openai SDK range, so it is kept out of the main test venv. LiteLLM's
``openai/`` provider reaches the fake model through OPENAI_API_BASE.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support import ServerProcess
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-compat" / "litellm"


def litellm_python() -> Path:
    python = VENV / "bin" / "python"
    # Installed again whenever pyproject.toml changes.
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    marker = VENV / f".installed-{digest}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-e", f"{ROOT}[litellm]"], check=True)
        marker.touch()
    return python


@pytest.fixture(scope="module")
def litellm_server(tmp_path_factory: pytest.TempPathFactory,
                   fake_model: FakeModelServer) -> Iterator[ServerProcess]:
    python = litellm_python()
    server = ServerProcess(tmp_path_factory.mktemp("litellm"), {
        "OPENAI_API_BASE": fake_model.base_url, "OPENAI_API_KEY": "fake",
        "VTAI_UPSTREAM_MAX_RETRIES": "0",
    }, python=str(python))
    for name in ("VTAI_UPSTREAM_BASE_URL", "OPENAI_BASE_URL"):
        server.env.pop(name, None)
    server.start(timeout=60)
    yield server
    server.stop()


# The time limit covers the fixture, which installs LiteLLM in its venv on a fresh checkout
# (and whenever pyproject.toml changes): that alone can take most of the usual 120 s.
@pytest.mark.timeout(900)
def test_runs_through_litellm(litellm_server: ServerProcess,
                              fake_model: FakeModelServer) -> None:
    fake_model.script("ll-model", Reply("via litellm"),
                      ToolCalls([Call("lookup", {"q": "z"})]), Reply("tool done"))
    client = OpenAI(base_url=litellm_server.base_url, api_key="x", max_retries=0)
    assistant = client.beta.assistants.create(
        model="litellm/openai/ll-model", tools=[{"type": "function", "function": {
            "name": "lookup", "parameters": {"type": "object", "properties": {
                "q": {"type": "string"}}}}}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "completed", (run.last_error and run.last_error.message)
    text = next(iter(client.beta.threads.messages.list(thread.id))).content[0].text.value
    assert text == "via litellm"
    assert fake_model.requests("ll-model")[0]["model"] == "ll-model"

    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "requires_action", run.last_error
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert json.loads(call.function.arguments) == {"q": "z"}
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id,
                                                          "output": "found"}])
    assert run.status == "completed", run.last_error
