"""/v1/models: what the model upstreams serve (an extension: the Assistants API has no models
of its own)."""

from __future__ import annotations

from typing import Any

from vtai.server.errors import NotFound
from vtai.server.providers.routing import Providers


class Models:
    def __init__(self, providers: Providers) -> None:
        self.providers = providers

    async def list(self) -> list[dict[str, Any]]:
        return await self.providers.list_models()

    async def retrieve(self, model: str) -> dict[str, Any]:
        for listed in await self.providers.list_models():
            if listed["id"] == model:
                return listed
        raise NotFound(f"The model '{model}' does not exist or you do not have access to it.",
                       "model", "model_not_found")
