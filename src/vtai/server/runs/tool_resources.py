"""What a run's built-in tools work with: the vector stores file_search searches and the files
the code interpreter gets, from the assistant's and the thread's tool_resources and the files
attached to the thread's messages (those for file_search are in the thread's own store)."""

from __future__ import annotations

from typing import Any

from vtai.server.retrieval.engine import Retrieval
from vtai.server.retrieval.threads import add_to_thread_store
from vtai.server.tools.base import attached_files


def resource_ids(owners: list[dict[str, Any]], tool_type: str, key: str) -> list[str]:
    """Ids from the owners' (assistant, thread) tool_resources, e.g. ("code_interpreter",
    "file_ids") or ("file_search", "vector_store_ids")."""
    found: list[str] = []
    for owner in owners:
        resources = (owner.get("tool_resources") or {}).get(tool_type) or {}
        for value in resources.get(key) or []:
            if value not in found:
                found.append(value)
    return found


def code_files(assistant: dict[str, Any], thread: dict[str, Any],
               messages: list[dict[str, Any]]) -> list[str]:
    """The code interpreter's files: the resources', then the messages' attachments."""
    return list(dict.fromkeys(resource_ids([assistant, thread], "code_interpreter", "file_ids")
                              + attached_files(messages, "code_interpreter")))


async def store_ids(retrieval: Retrieval, project: str, assistant: dict[str, Any],
                    thread: dict[str, Any], messages: list[dict[str, Any]]) -> list[str]:
    """The usable vector stores of the assistant and the thread, the thread's with its
    messages' attached files in it (they went in when the messages were created; a file of
    an older message, or in an expired store, goes in now) once they are indexed."""
    found = resource_ids([assistant, thread], "file_search", "vector_store_ids")
    attached = attached_files(messages, "file_search")
    if attached:
        async with retrieval.db.write() as conn:
            thread_store = await add_to_thread_store(conn, project, thread["id"], attached)
        if thread_store is not None:
            retrieval.wake()
            await retrieval.wait_indexed(thread_store, attached)
            found.append(thread_store)
    return await retrieval.usable_store_ids(project, found)
