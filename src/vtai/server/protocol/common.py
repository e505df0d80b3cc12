"""Request fields several resources share, validated as OpenAI validates them. No I/O."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

METADATA_PAIRS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512


class Strict(BaseModel):
    """Unknown fields are rejected, as OpenAI does ("Unrecognized request argument"), and so
    are values of another JSON type (``"stream": "yes"``, ``"max_completion_tokens": "300"``):
    pydantic's strict mode, in which only an integer passes for a number besides a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > METADATA_PAIRS:
        raise ValueError(
            f"too many properties. Expected an object with at most {METADATA_PAIRS} "
            f"properties, but got an object with {len(value)} properties instead."
        )
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS:
            raise ValueError(
                f"key too long. Expected a key with maximum length {METADATA_KEY_CHARS}, "
                f"but got a key with length {len(key)} instead."
            )
        if len(item) > METADATA_VALUE_CHARS:
            raise ValueError(
                f"string too long for key '{key}'. Expected a string with maximum length "
                f"{METADATA_VALUE_CHARS}, but got a string with length {len(item)} instead."
            )
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_check_metadata)]

# The integers a JSON value may hold to be stored (and sent on): 64 bits, signed or not.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def out_of_range_int(value: Any) -> str | None:
    """The path (``properties.n.maximum``, ``items[2]``) of an integer inside a JSON value
    that no 64-bit integer holds, "" for the value itself, or None if there is none."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not INT_MIN <= item <= INT_MAX:
                return path
        elif isinstance(item, dict):
            stack += [(f"{path}.{key}" if path else str(key), inner)
                      for key, inner in reversed(item.items())]
        elif isinstance(item, list):
            stack += [(f"{path}[{index}]", inner)
                      for index, inner in reversed(list(enumerate(item)))]
    return None


def check_json_ints(value: Any) -> Any:
    """A free-form JSON value (a schema, attributes) whose integers fit in 64 bits."""
    path = out_of_range_int(value)
    if path is not None:
        where = f" at {path}" if path else ""
        raise ValueError(f"integer out of range{where}: integers must fit in 64 bits.")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_ints)]


class CodeInterpreterTool(Strict):
    type: Literal["code_interpreter"]


class RankingOptions(Strict):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0.0, le=1.0)


class FileSearchOptions(Strict):
    max_num_results: int | None = Field(None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(Strict):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class FunctionDefinition(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=1024)
    parameters: JsonObject | None = None
    strict: bool | None = None


class FunctionTool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


def _retrieval_alias(value: Any) -> Any:
    # "retrieval" is the v1 name of file_search, still used by VT.ai's docs.
    if isinstance(value, dict) and value.get("type") == "retrieval":
        return {**value, "type": "file_search"}
    return value


Tool = Annotated[
    CodeInterpreterTool | FileSearchTool | FunctionTool,
    Field(discriminator="type"),
    BeforeValidator(_retrieval_alias),
]
Tools = Annotated[list[Tool], Field(max_length=128)]


class ResponseFormatText(Strict):
    type: Literal["text"]


class ResponseFormatJsonObject(Strict):
    type: Literal["json_object"]


class JsonSchema(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: JsonObject | None = Field(None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormatJsonSchema(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
)

# Float bounds: the error for a value out of them says "decimal" (see api.errors).
Temperature = Annotated[float | None, Field(ge=0.0, le=2.0)]
TopP = Annotated[float | None, Field(ge=0.0, le=1.0)]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None


def dump_tools(tools: list[Any]) -> list[dict[str, Any]]:
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


def dump_response_format(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value or "auto"
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


