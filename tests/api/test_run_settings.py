"""Runs on servers configured differently: expiry, no model provider, the demo fake model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import openai
import pytest
from openai import OpenAI

from tests.api.runs_support import WEATHER_TOOL, scripted_assistant, wait_for_status
from tests.conftest import BACKENDS, start_server
from tests.support import ServerProcess
from vtai.testing import Call, FakeModelServer, ToolCalls
from vtai.testing.app import FAKE_MODEL


@pytest.fixture(scope="module", params=BACKENDS)
def short_expiry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 fake_model: FakeModelServer) -> Iterator[OpenAI]:
    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("expiry"), request.param,
                              fake_model, {"VTAI_RUN_EXPIRES_AFTER": "1"})
        yield OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_unanswered_tool_calls_expire(short_expiry: OpenAI, fake_model: FakeModelServer) -> None:
    client = short_expiry
    assistant, _ = scripted_assistant(client, fake_model,
                                      ToolCalls([Call("get_weather", {"city": "Nowhere"})]),
                                      tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                   assistant_id=assistant.id)
    assert run.status == "requires_action"
    assert run.expires_at is not None and run.expires_at - run.created_at <= 2
    run = wait_for_status(client, thread.id, run.id, {"expired"}, timeout=15)
    assert run.status == "expired"
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id))
    assert [(s.status, bool(s.expired_at)) for s in steps] == [("expired", True)]
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread.id,
            tool_outputs=[{"tool_call_id": "call_x", "output": "late"}])


@pytest.fixture(scope="module")
def no_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No model upstream, and a 1 kB file size limit."""
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("noprovider"), "sqlite", None,
                           {"VTAI_MAX_FILE_BYTES": "1000"})


def test_file_size_limit(no_provider: ServerProcess) -> None:
    client = OpenAI(base_url=no_provider.base_url, api_key="x", max_retries=0)
    assert client.files.create(file=("ok.txt", b"x" * 1000), purpose="assistants").bytes == 1000
    with pytest.raises(openai.APIStatusError) as err:
        client.files.create(file=("big.txt", b"x" * 1001), purpose="assistants")
    assert err.value.status_code == 413
    assert "1000" in err.value.body["message"]
    assert not [p for p in (no_provider.data_dir / "files").rglob("*") if p.is_file()
                and p.stat().st_size > 1000]


def test_missing_provider_is_explained(no_provider: ServerProcess) -> None:
    client = OpenAI(base_url=no_provider.base_url, api_key="x", max_retries=0)
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    message = err.value.body["message"]
    assert "gpt-4o" in message and "VTAI_UPSTREAM_BASE_URL" in message
    assert err.value.body["param"] == "model"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("demo"), "sqlite", None,
                           args=("--fake-model",))


@pytest.mark.parametrize("model", ["anything", "ollama/llama3.2"])  # (the README's)
def test_fake_model_demo_says_so(demo_server: ServerProcess, model: str) -> None:
    """The README's quick start, on `vtai serve --fake-model`: every model is the fake's."""
    client = OpenAI(base_url=demo_server.base_url, api_key="x", max_retries=0)
    assistant = client.beta.assistants.create(model=model, instructions="Be brief.")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "ping"}]})
    assert run.status == "completed"
    text = client.beta.threads.messages.list(run.thread_id).data[0].content[0].text.value
    assert text.startswith("[VT.ai fake model") and text.endswith("You said: ping")
    assert "fake model" in demo_server.log()


def test_models_are_what_the_upstreams_list(tmp_path_factory: pytest.TempPathFactory,
                                            fake_model: FakeModelServer) -> None:
    """GET /v1/models (the SDK's client.models): the default upstream's models under their
    ids, a named provider's as name/id."""
    lab = json.dumps({"lab": {"base_url": fake_model.base_url, "api_key": "k"}})
    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("models"), "sqlite", fake_model,
                              {"VTAI_PROVIDERS": lab})
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        listed = {model.id: model for model in client.models.list()}
        assert {FAKE_MODEL, f"lab/{FAKE_MODEL}"} <= set(listed)
        assert listed[f"lab/{FAKE_MODEL}"].object == "model"
        assert client.models.retrieve(f"lab/{FAKE_MODEL}") == listed[f"lab/{FAKE_MODEL}"]
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve("nowhere/nothing")
        assert err.value.body["code"] == "model_not_found"


def test_fake_model_demo_calls_an_offered_function(demo_server: ServerProcess) -> None:
    """`vtai serve --fake-model` shows function calling on a plain request."""
    client = OpenAI(base_url=demo_server.base_url, api_key="x", max_retries=0)
    assistant = client.beta.assistants.create(model="anything", tools=[{
        "type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "What is the weather in Paris?"}]})
    assert run.status == "requires_action"
    [call] = run.required_action.submit_tool_outputs.tool_calls  # type: ignore[union-attr]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "Paris"})
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": '{"sky": "sunny"}'}])
    assert run.status == "completed"
    text = client.beta.threads.messages.list(run.thread_id).data[0].content[0].text.value
    assert text.endswith('`get_weather` answered: {"sky": "sunny"}')


def test_fake_model_demo_searches_the_uploaded_files(demo_server: ServerProcess) -> None:
    client = OpenAI(base_url=demo_server.base_url, api_key="x", max_retries=0)
    notes = client.files.create(file=("launch.md", b"# Launch\nThe launch is on Tuesday."),
                                purpose="assistants")
    assistant = client.beta.assistants.create(model="anything",
                                              tools=[{"type": "file_search"}])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{
            "role": "user", "content": "When is the launch? Search my files.",
            "attachments": [{"file_id": notes.id, "tools": [{"type": "file_search"}]}]}]})
    assert run.status == "completed", run.last_error
    [step] = [s for s in client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)
              if s.type == "tool_calls"]
    assert step.step_details.tool_calls[0].type == "file_search"  # type: ignore[union-attr]
    [part] = client.beta.threads.messages.list(run.thread_id).data[0].content
    assert "The launch is on Tuesday." in part.text.value  # type: ignore[union-attr]
    [citation] = part.text.annotations  # type: ignore[union-attr]
    assert citation.file_citation.file_id == notes.id  # type: ignore[union-attr]


def test_fake_model_demo_charts_with_the_code_interpreter(demo_server: ServerProcess) -> None:
    client = OpenAI(base_url=demo_server.base_url, api_key="x", max_retries=0)
    assistant = client.beta.assistants.create(model="anything",
                                              tools=[{"type": "code_interpreter"}])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Chart the squares, please"}]})
    assert run.status == "completed", run.last_error
    [step] = [s for s in client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)
              if s.type == "tool_calls"]
    [call] = step.step_details.tool_calls  # type: ignore[union-attr]
    assert "plt.show()" in call.code_interpreter.input  # type: ignore[union-attr]
    message = client.beta.threads.messages.list(run.thread_id).data[0]
    [text] = [p.text.value for p in message.content if p.type == "text"]
    assert "I ran the code" in text
    assert [p.type for p in message.content].count("image_file") == 1  # the chart
