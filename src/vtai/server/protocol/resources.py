"""``tool_resources`` of assistants, threads and runs."""

from __future__ import annotations

from pydantic import Field

from vtai.server.protocol.common import Strict
from vtai.server.protocol.vector_stores import InlineVectorStore


class CodeInterpreterResources(Strict):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class FileSearchResources(Strict):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[InlineVectorStore] | None = Field(None, max_length=1)


class ToolResources(Strict):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None
