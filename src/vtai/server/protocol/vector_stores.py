"""/v1/vector_stores request bodies, validated as OpenAI validates them (no I/O)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from vtai.server.protocol.common import Metadata, Strict, check_json_ints

ATTRIBUTE_PAIRS = 16
ATTRIBUTE_KEY_CHARS = 64
ATTRIBUTE_VALUE_CHARS = 512


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > ATTRIBUTE_PAIRS:
        raise ValueError(f"too many properties. Expected an object with at most "
                         f"{ATTRIBUTE_PAIRS} properties, but got {len(value)}.")
    for key, item in value.items():
        if len(key) > ATTRIBUTE_KEY_CHARS:
            raise ValueError(f"key too long. Expected a key with maximum length "
                             f"{ATTRIBUTE_KEY_CHARS}, but got a key with length {len(key)}.")
        if isinstance(item, str) and len(item) > ATTRIBUTE_VALUE_CHARS:
            raise ValueError(f"string too long for key '{key}'. Expected a string with maximum "
                             f"length {ATTRIBUTE_VALUE_CHARS}, but got {len(item)}.")
    return check_json_ints(value)


Attributes = Annotated[dict[str, str | bool | int | float] | None,
                       AfterValidator(_check_attributes)]


class StaticChunking(Strict):
    max_chunk_size_tokens: int = Field(ge=100, le=4096)
    chunk_overlap_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of "
                             "max_chunk_size_tokens.")
        return self


class AutoStrategy(Strict):
    type: Literal["auto"]


class StaticStrategy(Strict):
    type: Literal["static"]
    static: StaticChunking


def _strategy_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    # Tags with a "-" are left out of error params ("chunking_strategy.static.<field>").
    return f"{kind}-strategy" if kind in ("auto", "static") else None


ChunkingStrategy = Annotated[
    Annotated[AutoStrategy, Tag("auto-strategy")] | Annotated[StaticStrategy,
                                                              Tag("static-strategy")],
    Discriminator(_strategy_tag, custom_error_type="invalid_chunking_strategy",
                  custom_error_message="type must be 'auto' or 'static'"),
]


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class VectorStoreCreate(Strict):
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


class VectorStoreModify(Strict):
    name: str | None = Field(None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Metadata = None


class VectorStoreFileCreate(Strict):
    file_id: str = Field(max_length=64)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None


class VectorStoreFileUpdate(Strict):
    attributes: Attributes


class FileBatchCreate(Strict):
    # How many: the max_batch_files setting, checked by the route.
    file_ids: list[str] | None = Field(None, min_length=1)
    files: list[VectorStoreFileCreate] | None = Field(None, min_length=1)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None

    @model_validator(mode="after")
    def _one_list(self) -> FileBatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("provide exactly one of file_ids and files.")
        return self


Value = str | int | float | bool


class ComparisonFilter(Strict):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str
    value: Value | list[str | int | float]

    @model_validator(mode="after")
    def _value_kind(self) -> ComparisonFilter:
        if (self.type in ("in", "nin")) != isinstance(self.value, list):
            raise ValueError("'in' and 'nin' compare with an array; the other operators with "
                             "a string, number or boolean.")
        return self


class CompoundFilter(Strict):
    type: Literal["and", "or"]
    filters: list[ComparisonFilter | CompoundFilter] = Field(min_length=1)


class SearchRankingOptions(Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)


class SearchRequest(Strict):
    query: str | list[str]
    rewrite_query: bool = False
    max_num_results: int = Field(10, ge=1, le=50)
    filters: ComparisonFilter | CompoundFilter | None = None
    ranking_options: SearchRankingOptions | None = None

    @model_validator(mode="after")
    def _queries(self) -> SearchRequest:
        if not self.queries():
            raise ValueError("query must not be empty.")
        return self

    def queries(self) -> list[str]:
        items = [self.query] if isinstance(self.query, str) else self.query
        return [q for q in items if q.strip()]


class InlineVectorStore(Strict):
    """A vector store given inline, in ``tool_resources.file_search.vector_stores``."""

    file_ids: list[str] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None
