"""List parameters in OpenAI's semantics: limit 1..100 (default 20), order, after, before."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListParams:
    limit: int = 20
    order: str = "desc"
    after: str | None = None
    before: str | None = None
