"""Assistants, threads and messages: the documented functions that create them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from openai import AsyncOpenAI
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message

from vtai.assistants.errors import api_errors
from vtai.assistants.tools import normalize_tools


async def create_assistant(client: AsyncOpenAI, name: str, instructions: str,
                           tools: Iterable[Mapping[str, Any]] | None = None,
                           model: str = "o3") -> Assistant:
    """Create an assistant named ``name`` with ``instructions`` and ``tools``
    (``{"type": "retrieval"}`` is taken as file_search) on ``model``.

    Returns the new ``Assistant``."""
    with api_errors("create the assistant"):
        return await client.beta.assistants.create(
            name=name, instructions=instructions, model=model,
            tools=normalize_tools(tools))  # type: ignore[arg-type]


async def create_thread(client: AsyncOpenAI) -> Thread:
    """Create an empty conversation thread.

    Returns the new ``Thread``."""
    with api_errors("create a thread"):
        return await client.beta.threads.create()


async def add_message_to_thread(client: AsyncOpenAI, thread_id: str,
                                content: str | Iterable[Mapping[str, Any]],
                                role: str = "user") -> Message:
    """Add a message with ``content`` (text, or a list of content parts) to the thread, as
    ``role`` ("user" or "assistant").

    Returns the new ``Message``."""
    with api_errors("add the message to the thread"):
        return await client.beta.threads.messages.create(
            thread_id, content=content, role=role)  # type: ignore[arg-type]
