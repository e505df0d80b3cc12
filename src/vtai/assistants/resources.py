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


async def provide_functions(client: AsyncOpenAI, assistant: Assistant,
                            functions: Iterable[Mapping[str, Any]]) -> tuple[Assistant, list[str]]:
    """Give the assistant these function tools (added, or updated where their definition
    changed), keeping its other tools.

    Returns the assistant as it is now, and the names of the functions added or updated."""
    tools = [tool.model_dump(exclude_none=True) for tool in assistant.tools]
    by_name = {tool["function"]["name"]: index for index, tool in enumerate(tools)
               if tool.get("type") == "function"}
    changed = []
    for wanted in functions:
        name = wanted["function"]["name"]
        index = by_name.get(name)
        if index is None:
            tools.append(dict(wanted))
        elif _differs(tools[index]["function"], wanted["function"]):
            tools[index] = dict(wanted)
        else:
            continue
        changed.append(name)
    if not changed:
        return assistant, []
    with api_errors("give the assistant its functions"):
        updated = await client.beta.assistants.update(
            assistant.id, tools=tools)  # type: ignore[arg-type]
    return updated, changed


def _differs(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return any(have.get(key) != want.get(key) for key in ("description", "parameters")
               if want.get(key) is not None)
