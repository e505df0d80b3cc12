"""/v1/responses request bodies: input items, tools, and the options of a response.

Fields OpenAI takes that only tune its own hosting (prompt caching, service tier, moderation,
...) are accepted and ignored; a field OpenAI does not take is refused, as OpenAI refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from vtai.server.protocol.common import JsonObject, Metadata, Strict, Temperature, TopP
from vtai.server.protocol.vector_stores import ComparisonFilter, CompoundFilter

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
Detail = Literal["auto", "low", "high", "original"]

# ----------------------------------------------------------------------------- content


class InputText(Strict):
    type: Literal["input_text"]
    text: str


class InputImage(Strict):
    type: Literal["input_image"]
    detail: Detail = "auto"
    image_url: str | None = None
    file_id: str | None = None


class InputFile(Strict):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Detail | None = None


class OutputText(Strict):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class Refusal(Strict):
    type: Literal["refusal"]
    refusal: str


Content = Annotated[InputText | InputImage | InputFile | OutputText | Refusal,
                    Field(discriminator="type")]

# ----------------------------------------------------------------------------- items


class MessageItem(Strict):
    """A message: the short form ``{"role", "content"}`` or the whole one (``type``,
    ``id`` and ``status``, as an earlier response's output gives it back)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Content]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(Strict):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    namespace: str | None = None


class FunctionCallOutputItem(Strict):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[Content]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ItemReference(Strict):
    type: Literal["item_reference"]
    id: str


class ReasoningItem(Strict):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ToolCallItem(Strict):
    """A built-in tool's call of an earlier response, given back as it came."""

    type: Literal["file_search_call", "code_interpreter_call"]
    id: str
    status: str | None = None
    queries: list[str] | None = None
    results: list[dict[str, Any]] | None = None
    code: str | None = None
    container_id: str | None = None
    outputs: list[dict[str, Any]] | None = None


def _item_tag(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) \
        else getattr(value, "type", "message")
    return "tool_call" if kind in ("file_search_call", "code_interpreter_call") else str(kind)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ItemReference, Tag("item_reference")] | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[ToolCallItem, Tag("tool_call")],
    Discriminator(_item_tag),
]

# ----------------------------------------------------------------------------- tools


class FunctionTool(Strict):
    type: Literal["function"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(None, max_length=1024)
    parameters: JsonObject | None = None
    strict: bool | None = None
    defer_loading: bool | None = None  # (OpenAI's tool search: every tool is offered here)
    output_schema: JsonObject | None = None
    allowed_callers: list[Any] | None = None


class RankingOptions(Strict):
    ranker: Literal["auto", "default-2024-11-15", "none"] | None = None
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)
    hybrid_search: dict[str, Any] | None = None


class FileSearchTool(Strict):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(max_length=2)
    filters: ComparisonFilter | CompoundFilter | None = None
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class ContainerAuto(Strict):
    type: Literal["auto"]
    file_ids: list[str] = Field(default_factory=list, max_length=50)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: dict[str, Any] | None = None


class CodeInterpreterTool(Strict):
    type: Literal["code_interpreter"]
    container: str | ContainerAuto
    allowed_callers: list[Any] | None = None


ResponseTool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool,
                         Field(discriminator="type")]


class FunctionChoice(Strict):
    type: Literal["function"]
    name: str


class BuiltinChoice(Strict):
    type: Literal["file_search", "code_interpreter"]


ToolChoice = Literal["none", "auto", "required"] | Annotated[
    FunctionChoice | BuiltinChoice, Field(discriminator="type")]

# ----------------------------------------------------------------------------- options


class TextFormatText(Strict):
    type: Literal["text"]


class TextFormatJsonObject(Strict):
    type: Literal["json_object"]


class TextFormatJsonSchema(Strict):
    type: Literal["json_schema"]
    name: str = Field(pattern=NAME_PATTERN)
    schema_: JsonObject = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextOptions(Strict):
    format: Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema,
                      Field(discriminator="type")] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningOptions(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ConversationRef(Strict):
    id: str


Includable = Literal[
    "file_search_call.results", "code_interpreter_call.outputs",
    "message.output_text.logprobs", "message.input_image.image_url",
    "reasoning.encrypted_content", "web_search_call.action.sources",
    "computer_call_output.output.image_url"]


class ResponseCreate(Strict):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputItem] | None = None
    instructions: str | None = Field(None, max_length=256_000)
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    tools: list[ResponseTool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: int | None = Field(None, ge=16)
    truncation: Literal["auto", "disabled"] | None = None
    temperature: Temperature = None
    top_p: TopP = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    metadata: Metadata = None
    include: list[Includable] | None = None
    user: str | None = Field(None, max_length=512)
    safety_identifier: str | None = Field(None, max_length=128)
    prompt_cache_key: str | None = Field(None, max_length=512)
    # Accepted and ignored: they tune OpenAI's own hosting.
    prompt_cache_retention: Any = None
    prompt_cache_options: Any = None
    service_tier: Any = None
    stream_options: Any = None
    prompt: Any = None
    moderation: Any = None
    context_management: Any = None
    background_options: Any = None


class InputTokensRequest(Strict):
    """``POST /v1/responses/input_tokens``: what a response would be given."""

    model: str | None = Field(None, max_length=256)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    tools: list[ResponseTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    truncation: Literal["auto", "disabled"] | None = None
