"""/v1/threads request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vtai.server.protocol.common import Metadata, Strict
from vtai.server.protocol.messages import MessageCreate
from vtai.server.protocol.resources import ToolResources


class ThreadCreate(Strict):
    messages: list[MessageCreate] = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


class ThreadModify(Strict):
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


def resource_file_ids(tool_resources: Any) -> list[str]:
    """The code interpreter's files a tool_resources request names."""
    code = getattr(tool_resources, "code_interpreter", None) if tool_resources else None
    return list(code.file_ids) if code else []
