"""The interface between the run executor and a built-in tool.

The model sees a built-in tool as a function (``definition``). When it calls it, the executor
records a ``tool_calls`` step whose call has the tool's own type (``code_interpreter``,
``file_search``), runs ``call`` right away, feeds ``ToolResult.output`` back to the model and
calls the model again: no ``requires_action`` round trip through the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vtai.server.settings import Settings
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore


async def _no_stores() -> list[str]:
    return []


@dataclass(frozen=True)
class InputFile:
    """A file to put in the code interpreter's /mnt/data that is not a file object (a
    container's file)."""

    key: str  # what the session remembers it by: once placed, it is not placed again
    name: str  # its name in /mnt/data
    open: Callable[[], Awaitable[AsyncIterator[bytes]]]  # its bytes, a chunk at a time


# Keeps a file the code wrote (its path below /mnt/data, its bytes) somewhere of the
# engine's choosing; returns the id it is kept under.
KeepWritten = Callable[[str, bytes], Awaitable[str]]


@dataclass
class ToolContext:
    """What a tool call may use: where it runs and what it may read, and a way to stream
    its progress. The engine of each API (runs, responses) fills it from its own objects."""

    project: str
    # The code interpreter's session: its kernel and files live as long as it does (a
    # thread's, or a container's).
    session: str
    db: Database
    files: FileStore
    settings: Settings
    # The tool's own options, as the run's or response's tools give them (file_search:
    # max_num_results, ranking_options, filters).
    options: dict[str, Any] = field(default_factory=dict)
    # code_interpreter: the files to put in /mnt/data (file objects; and others, asked
    # for when the code runs), and where the files the code writes go (None: they become
    # file objects).
    input_file_ids: list[str] = field(default_factory=list)
    input_files: Callable[[], Awaitable[list[InputFile]]] | None = None
    keep_written: KeepWritten | None = None
    # file_search: the vector stores to search, usable and indexed (asked for when the
    # model searches: making a thread's store and indexing its files takes time).
    store_ids: Callable[[], Awaitable[list[str]]] = _no_stores
    # Publishes a ``thread.run.step.delta`` for this call: pass the call's changed fields,
    # e.g. {"code_interpreter": {"outputs": [...]}}; index, id and type are added.
    emit: Callable[[dict[str, Any]], None] = field(default=lambda _delta: None)


def attached_files(messages: list[dict[str, Any]], tool_type: str) -> list[str]:
    """Files attached to ``messages`` (message objects) for ``tool_type``."""
    found: list[str] = []
    for message in messages:
        for attachment in message.get("attachments") or []:
            tools = {t.get("type") for t in attachment.get("tools") or []}
            if tool_type in tools and attachment["file_id"] not in found:
                found.append(attachment["file_id"])
    return found


@dataclass
class ToolResult:
    call: dict[str, Any]  # the step's tool call, e.g. {"id", "type": "code_interpreter", ...}
    output: str           # what the model reads as the result
    # What the call's step has no place for and a response's item does (file_search: its
    # queries and its results' attributes).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MessageAdditions:
    """What a tool adds to the assistant message written after its calls."""

    annotations: list[dict[str, Any]] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)  # e.g. image_file parts


class BuiltinTool(Protocol):
    type: str  # the tool type in assistants' and runs' ``tools``

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        """The function tool shown to the model, from the run's tool entry."""
        ...

    def initial_call(self, call_id: str, arguments: str) -> dict[str, Any]:
        """The step's tool call before it runs (streamed in the first step delta)."""
        ...

    async def call(self, ctx: ToolContext, call_id: str, arguments: str) -> ToolResult:
        """Run one call. Failures are results too (the model reads them), not exceptions."""
        ...

    def replay(self, call: dict[str, Any]) -> tuple[str, str]:
        """A recorded call as the model made and read it: (arguments JSON, output text)."""
        ...

    def message_additions(self, text: str, calls: list[dict[str, Any]]) -> MessageAdditions:
        """Annotations and parts for an assistant message whose text is ``text``, given this
        tool's calls (step call objects) made since the run's previous message."""
        ...
