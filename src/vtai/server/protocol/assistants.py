"""/v1/assistants request bodies."""

from __future__ import annotations

from pydantic import Field

from vtai.server.protocol.common import (
    Metadata,
    ReasoningEffort,
    ResponseFormat,
    Strict,
    Temperature,
    Tools,
    TopP,
)
from vtai.server.protocol.resources import ToolResources


class AssistantFields(Strict):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=256_000)
    tools: Tools = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort = None


class AssistantCreate(AssistantFields):
    model: str = Field(min_length=1, max_length=256)


class AssistantModify(AssistantFields):
    model: str | None = Field(None, min_length=1, max_length=256)
