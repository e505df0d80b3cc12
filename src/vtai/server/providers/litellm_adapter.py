"""Models served through LiteLLM (``pip install 'vtai-assistants[litellm]'``), named
``litellm/<model>``.

LiteLLM reaches providers that do not speak OpenAI's API (Anthropic, Bedrock, Vertex, ...),
configured by its own environment variables. Its streaming chunks have the shape of OpenAI's,
so the executor consumes them as it does the openai SDK's.
"""

from __future__ import annotations

import os
from typing import Any


class _Completions:
    async def create(self, **params: Any) -> Any:
        # LiteLLM fetches a model price list at import unless told to use its bundled copy.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError as err:  # the extra is not installed
            raise LiteLLMMissing() from err
        return await litellm.acompletion(**params)


class _Chat:
    def __init__(self) -> None:
        self.completions = _Completions()


class LiteLLMClient:
    """The part of AsyncOpenAI's interface that runs use: ``chat.completions.create``."""

    def __init__(self) -> None:
        self.chat = _Chat()

    async def close(self) -> None:
        """LiteLLM keeps no connection of ours to close."""


class LiteLLMMissing(Exception):
    def __init__(self) -> None:
        super().__init__("The model prefix 'litellm/' needs LiteLLM: "
                         "pip install 'vtai-assistants[litellm]'.")


def litellm_installed() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("litellm") is not None
    except ValueError:
        return False
