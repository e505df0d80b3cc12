"""Requests this server passes on to the model's upstream as they are (chat completions,
embeddings): only what routing needs is checked here; the upstream checks the rest."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """Any other field is the upstream's to take or refuse."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)


class ChatCompletionRequest(_Open):
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None


class EmbeddingsRequest(_Open):
    input: str | list[Any]
