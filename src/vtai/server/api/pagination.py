"""List parameters in OpenAI's semantics: limit 1..100 (default 20), order, after, before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Query


@dataclass(frozen=True)
class ListParams:
    limit: int
    order: str
    after: str | None
    before: str | None


async def list_params(  # async: FastAPI runs sync dependencies in a thread
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, max_length=64),
    before: str | None = Query(None, max_length=64),
) -> ListParams:
    return ListParams(limit=limit, order=order, after=after, before=before)
