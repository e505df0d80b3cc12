"""Objects checked against the openai SDK's own types, so the SDK reads what is sent."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def shaped(model: type[M], obj: dict[str, Any]) -> dict[str, Any]:
    """Check an object against the openai SDK's own type ``model``.

    The object is returned as built, not as the SDK would dump it: a dump spells out every
    optional field of nested objects as null (``"tool_resources": {"code_interpreter":
    null}``), which OpenAI's contract does not allow."""
    model.model_validate(obj)
    return obj
