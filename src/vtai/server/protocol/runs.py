"""/v1/threads/{thread_id}/runs and /v1/threads/runs request bodies."""

from __future__ import annotations

from typing import Annotated, Literal

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
from vtai.server.protocol.messages import MessageCreate
from vtai.server.protocol.resources import ToolResources
from vtai.server.protocol.threads import ThreadCreate

# The one value of ``include[]`` there is: file_search results' content in steps.
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


class TruncationStrategy(Strict):
    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(None, ge=1)


class ToolChoiceFunction(Strict):
    name: str


class FunctionToolChoice(Strict):
    type: Literal["function"]
    function: ToolChoiceFunction


class BuiltinToolChoice(Strict):
    type: Literal["code_interpreter", "file_search"]


ToolChoice = Literal["none", "auto", "required"] | Annotated[
    FunctionToolChoice | BuiltinToolChoice, Field(discriminator="type")]


class RunOptions(Strict):
    assistant_id: str
    model: str | None = Field(None, min_length=1, max_length=256)
    instructions: str | None = Field(None, max_length=256_000)
    tools: Tools | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    stream: bool | None = None
    max_prompt_tokens: int | None = Field(None, ge=256)
    max_completion_tokens: int | None = Field(None, ge=256)
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort = None


class RunCreate(RunOptions):
    additional_instructions: str | None = Field(None, max_length=256_000)
    additional_messages: list[MessageCreate] | None = None


class ThreadAndRunCreate(RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class RunModify(Strict):
    metadata: Metadata = None


class ToolOutput(Strict):
    tool_call_id: str
    output: str = ""


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
