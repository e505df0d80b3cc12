"""Helpers for run tests: assistants whose model is a fresh script of the fake model."""

from __future__ import annotations

import time
import uuid
from typing import Any

from openai import OpenAI

from vtai.testing import FakeModelServer

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


def scripted_assistant(client: OpenAI, fake_model: FakeModelServer, *steps: Any,
                       **kwargs: Any) -> tuple[Any, str]:
    """An assistant on a model name no other test uses, with ``steps`` scripted for it."""
    model = f"script-{uuid.uuid4().hex[:10]}"
    if steps:
        fake_model.script(model, *steps)
    assistant = client.beta.assistants.create(model=model, **kwargs)
    return assistant, model


def upload(client: OpenAI, name: str = "data.txt", data: bytes = b"some data") -> str:
    """A file of the client's project, for requests that refer to one."""
    return client.files.create(file=(name, data), purpose="assistants").id


def wait_for_status(client: OpenAI, thread_id: str, run_id: str, statuses: set[str],
                    timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def wait_for_thread_run(client: OpenAI, thread_id: str, statuses: set[str],
                        timeout: float = 20.0) -> Any:
    """The thread's latest run once its status is one of ``statuses`` (or at the
    deadline, as it is then; None if the thread has no run)."""
    deadline = time.monotonic() + timeout
    while True:
        run = next(iter(client.beta.threads.runs.list(thread_id, limit=1)), None)
        if (run is not None and run.status in statuses) or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def wait_for_answer(client: OpenAI, thread_id: str, timeout: float = 20.0) -> Any:
    """The thread's latest assistant message once there is one: the answer has begun."""
    deadline = time.monotonic() + timeout
    while True:
        message = next(iter(client.beta.threads.messages.list(thread_id, limit=1)), None)
        if message is not None and message.role == "assistant":
            return message
        assert time.monotonic() < deadline, "no answer began"
        time.sleep(0.05)


def event_names(events: list[tuple[str, object]]) -> list[str]:
    """Event names with consecutive duplicates (delta runs) collapsed."""
    names: list[str] = []
    for name, _ in events:
        if not names or names[-1] != name or not name.endswith(".delta"):
            names.append(name)
    return names
