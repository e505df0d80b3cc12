"""Which upstream serves a model. First match wins:

1. ``provider/model`` where ``provider`` is configured in ``VTAI_PROVIDERS`` or is a
   well-known local server (ollama, vllm, llamacpp, lmstudio) -> that provider, model ``model``;
   ``litellm/model`` -> LiteLLM (an optional extra) with ``model``;
2. the default upstream: ``VTAI_UPSTREAM_BASE_URL`` or ``OPENAI_BASE_URL`` (with
   ``VTAI_UPSTREAM_API_KEY`` or ``OPENAI_API_KEY``), or OpenAI itself when only
   ``OPENAI_API_KEY`` is set;
3. Ollama on localhost:11434 when it answers;
4. otherwise a clear error naming what to configure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from openai import AsyncOpenAI, AsyncStream

from vtai.server.providers.litellm_adapter import LiteLLMClient, litellm_installed
from vtai.server.settings import Settings

log = logging.getLogger("vtai.providers")

WELL_KNOWN = {
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "llamacpp": "http://localhost:8080/v1",
    "lmstudio": "http://localhost:1234/v1",
}
OLLAMA_URL = WELL_KNOWN["ollama"]
_PROBE_TTL = 30.0
CLIENTS_PER_PROVIDER = 8


class ProviderMissing(Exception):
    """No configured upstream can serve the model; the message says what to configure."""


@dataclass(frozen=True)
class Route:
    provider: str
    client: Any  # AsyncOpenAI, or an object with the same chat.completions.create
    model: str

    async def stream_chat(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The chunks of a streamed chat completion, as plain dicts.

        Through AsyncOpenAI, the request is the SDK's own (retries, timeouts, errors, the
        SSE decoding and its ``error`` events) but chunks are not built into typed objects,
        which would cost more CPU than the rest of a run's streaming."""
        if isinstance(self.client, AsyncOpenAI):
            stream = await self.client.post(
                "/chat/completions", body=params, cast_to=object, stream=True,
                stream_cls=AsyncStream[object])
            try:
                async for chunk in stream:
                    if not isinstance(chunk, dict):
                        raise ValueError(f"the model sent a chunk that is not an object: "
                                         f"{chunk!r}")
                    yield chunk
            finally:
                await stream.close()
            return
        async for chunk in await self.client.chat.completions.create(**params):
            yield chunk if isinstance(chunk, dict) else chunk.model_dump()


class Providers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, list[AsyncOpenAI]] = {}
        self._turn = 0
        self._litellm = LiteLLMClient()
        self._ollama_seen: tuple[float, bool] = (0.0, False)
        named = {name: dict(cfg) for name, cfg in settings.providers.items()}
        for name, url in WELL_KNOWN.items():
            named.setdefault(name, {"base_url": url})
        self.named = named
        base_url = settings.upstream_base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = settings.upstream_api_key or os.environ.get("OPENAI_API_KEY")
        self.default: dict[str, str] | None = None
        if base_url or api_key:
            self.default = {"base_url": base_url or "https://api.openai.com/v1",
                            "api_key": api_key or "none"}

    def _client(self, name: str, cfg: dict[str, str]) -> AsyncOpenAI:
        """One of the provider's clients, in turn. Each has its own connection pool: the
        HTTP pool looks over all of its connections on every request and response, so
        hundreds of concurrent streams in one pool cost more CPU than the streams do."""
        clients = self._clients.setdefault(name, [])
        self._turn += 1
        slot = self._turn % CLIENTS_PER_PROVIDER
        if slot >= len(clients):  # made when first needed: each costs a TLS context
            clients.append(AsyncOpenAI(
                base_url=cfg["base_url"], api_key=cfg.get("api_key") or "none",
                max_retries=self.settings.upstream_max_retries,
                timeout=self.settings.upstream_timeout,
            ))
            slot = len(clients) - 1
        return clients[slot]

    async def route(self, model: str) -> Route:
        prefix, sep, rest = model.partition("/")
        if sep and prefix == "litellm":
            if not litellm_installed():
                raise ProviderMissing(
                    f"The model '{model}' needs LiteLLM: pip install 'vtai[litellm]'.")
            return Route("litellm", self._litellm, rest)
        if sep and prefix in self.named:
            return Route(prefix, self._client(prefix, self.named[prefix]), rest)
        if self.default is not None:
            return Route("default", self._client("default", self.default), model)
        if await self._ollama_answers():
            return Route("ollama", self._client("ollama", self.named["ollama"]), model)
        raise ProviderMissing(
            f"No model provider can serve '{model}'. Set VTAI_UPSTREAM_BASE_URL (or "
            "OPENAI_BASE_URL and OPENAI_API_KEY) to an OpenAI-compatible endpoint, name a "
            "provider with a prefix such as 'ollama/llama3.2', configure one in "
            "VTAI_PROVIDERS, or start Ollama on localhost:11434."
        )

    async def _ollama_answers(self) -> bool:
        if not self.settings.ollama_probe:
            return False
        checked_at, seen = self._ollama_seen
        if time.monotonic() - checked_at < _PROBE_TTL:
            return seen
        try:
            async with httpx.AsyncClient(timeout=0.5) as http:
                seen = (await http.get(f"{OLLAMA_URL}/models")).status_code == 200
        except httpx.HTTPError:
            seen = False
        self._ollama_seen = (time.monotonic(), seen)
        return seen

    async def close(self) -> None:
        for clients in self._clients.values():
            for client in clients:
                await client.close()
