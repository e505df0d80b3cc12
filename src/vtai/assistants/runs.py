"""Runs: create one, follow it until it stops, and hand it tool outputs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from openai import AsyncOpenAI
from openai.types.beta.threads import Run

from vtai.assistants.errors import RunTimeout, api_errors

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
# A run in these statuses changes only when the client acts (submits outputs) or never.
STOPPED_STATUSES = TERMINAL_STATUSES | {"requires_action"}
DEFAULT_POLL_SECONDS = 1.0  # what the SDK waits when the server gives no openai-poll-after-ms
DEFAULT_TIMEOUT_SECONDS = 600.0


async def create_run(client: AsyncOpenAI, thread_id: str, assistant_id: str) -> Run:
    """Start the assistant on the thread.

    Returns the new ``Run`` (usually ``queued``)."""
    with api_errors("start a run"):
        return await client.beta.threads.runs.create(thread_id, assistant_id=assistant_id)


async def poll_run(client: AsyncOpenAI, thread_id: str, run_id: str) -> Run:
    """Wait until the run stops: a terminal status (completed, failed, cancelled, expired,
    incomplete) or ``requires_action``, which waits for :func:`submit_tool_outputs`.

    Polls as often as the server's ``openai-poll-after-ms`` header asks, and gives up with
    :class:`RunTimeout` after the client's read timeout (``AsyncOpenAI(timeout=...)``).

    Returns the stopped ``Run``."""
    deadline = time.monotonic() + _timeout(client)
    while True:
        with api_errors("check the run's status"):
            response = await client.beta.threads.runs.with_raw_response.retrieve(
                run_id, thread_id=thread_id)
            run: Run = response.parse()
        if run.status in STOPPED_STATUSES:
            return run
        delay = _poll_after(response.headers.get("openai-poll-after-ms"))
        if time.monotonic() + delay > deadline:
            raise RunTimeout(f"Run {run_id} is still {run.status} after "
                             f"{_timeout(client):g} seconds")
        await asyncio.sleep(delay)


async def submit_tool_outputs(client: AsyncOpenAI, thread_id: str, run_id: str,
                              tool_outputs: Iterable[Mapping[str, Any]]) -> Run:
    """Give a run in ``requires_action`` the outputs of its function calls
    (``[{"tool_call_id": ..., "output": ...}]``, as :func:`process_tool_calls` returns).

    Returns the updated ``Run`` (queued again)."""
    with api_errors("submit the tool outputs"):
        return await client.beta.threads.runs.submit_tool_outputs(
            run_id, thread_id=thread_id, tool_outputs=list(tool_outputs))  # type: ignore[arg-type]


def _poll_after(header: str | None) -> float:
    try:
        return max(int(header or ""), 0) / 1000
    except ValueError:
        return DEFAULT_POLL_SECONDS


def _timeout(client: AsyncOpenAI) -> float:
    timeout: Any = client.timeout
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if read is not None else DEFAULT_TIMEOUT_SECONDS
