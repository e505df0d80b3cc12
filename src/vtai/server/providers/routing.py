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

import asyncio
import contextlib
import functools
import logging
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import certifi

from vtai.server.providers.chat_stream import Answer, UpstreamError
from vtai.server.providers.litellm_adapter import LiteLLMClient, litellm_installed
from vtai.server.providers.upstream import Upstream
from vtai.server.settings import Settings

log = logging.getLogger("vtai.providers")

WELL_KNOWN = {
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "llamacpp": "http://localhost:8080/v1",
    "lmstudio": "http://localhost:1234/v1",
}
_PROBE_TTL = 30.0
_OLLAMA_PROBE_TIMEOUT = 0.5
_MODELS_TTL = 10.0  # seconds a listing of the upstreams' models is kept
_MODELS_TIMEOUT = 3.0  # seconds an upstream has to list its models


class ProviderMissing(Exception):
    """No configured upstream can serve the model; the message says what to configure."""


@functools.cache
def _tls(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """One TLS context for every upstream client: making one reads the whole CA bundle, a
    tenth of a second the event loop would spend on it for each new client."""
    return ssl.create_default_context(cafile=cafile or certifi.where(), capath=capath)


class _Deferred:
    """An answer from a client without a separate open (LiteLLM): asked for when read."""

    def __init__(self, client: Any, params: dict[str, Any]) -> None:
        self._client = client
        self._params = params

    def release(self) -> None:
        """Nothing was sent yet."""

    async def chunks(self) -> AsyncGenerator[dict[str, Any], None]:
        async for chunk in await self._client.chat.completions.create(**self._params):
            yield chunk if isinstance(chunk, dict) else chunk.model_dump()


OpenAnswer = Answer | _Deferred


@dataclass(frozen=True)
class Route:
    provider: str
    upstream: Upstream | None  # the provider's server (None: LiteLLM)
    model: str
    litellm: LiteLLMClient | None = None

    async def open_chat(self, params: dict[str, Any]) -> OpenAnswer:
        """Ask for a streamed chat completion: the request is sent (the model is at work) by
        the time this returns; ``chunks()`` then gives the chunks as plain dicts."""
        if self.upstream is not None:
            return await self.upstream.open(params)
        return _Deferred(self.litellm, params)


class Providers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._upstreams: dict[str, Upstream] = {}
        self._litellm = LiteLLMClient()
        self._ollama_seen: tuple[float, bool] = (0.0, False)
        self._models_seen: tuple[float, list[dict[str, Any]]] = (-_MODELS_TTL, [])
        self.serving_at: tuple[str, int] | None = None  # this process's HTTP address, if any
        named = {name: dict(cfg) for name, cfg in settings.providers.items()}
        for name, url in WELL_KNOWN.items():
            named.setdefault(name, {"base_url": url})
        self.named = named
        base_url, api_key = settings.upstream_base_url, settings.upstream_api_key
        self.default: dict[str, str] | None = None
        if base_url or api_key:
            self.default = {"base_url": base_url or "https://api.openai.com/v1",
                            "api_key": api_key or "none"}

    def _tls(self) -> ssl.SSLContext:
        return _tls(self.settings.ssl_cert_file, self.settings.ssl_cert_dir)

    def upstream(self, name: str, cfg: dict[str, str]) -> Upstream:
        """The provider's server, made once (ProviderMissing if it is this server)."""
        made = self._upstreams.get(name)
        if made is None:
            self._check_not_this_server(name, cfg["base_url"])
            made = self._upstreams[name] = Upstream(
                cfg["base_url"], cfg.get("api_key") or "none",
                max_retries=self.settings.upstream_max_retries,
                timeout=self.settings.upstream_timeout, tls=self._tls())
        return made

    def prepare(self) -> None:
        """Make the default upstream's clients now, at start-up: the first (the TLS context
        reads the whole CA bundle, modules are imported) holds the event loop for 50-150 ms,
        which the server's first run would wait out otherwise."""
        self._tls()
        if self.default is not None:
            with contextlib.suppress(ProviderMissing):  # (each run says so, see _client)
                self.upstream("default", self.default)

    async def list_models(self) -> list[dict[str, Any]]:
        """The models the upstreams list (each one's ``GET /models``, asked at once, a few
        seconds at most): the default upstream's under their own ids, a named provider's as
        ``name/id``. An upstream that does not answer, or is this server, is left out. Kept
        for a few seconds."""
        seen_at, models = self._models_seen
        if time.monotonic() - seen_at < _MODELS_TTL:
            return models
        sources: list[tuple[str, str, dict[str, str]]] = []
        if self.default is not None:
            sources.append(("default", "", self.default))
        if not self.settings.default_upstream_only:
            sources += [(name, f"{name}/", cfg) for name, cfg in self.named.items()]
        found = await asyncio.gather(*(self._models_of(*source) for source in sources))
        models = [model for listed in found for model in listed]
        self._models_seen = (time.monotonic(), models)
        return models

    async def _models_of(self, name: str, prefix: str, cfg: dict[str, str]
                         ) -> list[dict[str, Any]]:
        try:
            page = await self.upstream(name, cfg).json("GET", "/models", retries=0,
                                                        within=_MODELS_TIMEOUT)
            listed = [model for model in page["data"] if isinstance(model.get("id"), str)]
        except (ProviderMissing, UpstreamError, TypeError, KeyError, AttributeError) as err:
            log.debug("provider %s lists no models: %s", name, err)
            return []
        return [{"id": prefix + model["id"], "object": "model",
                 "created": int(model.get("created") or 0),
                 "owned_by": model.get("owned_by") or name} for model in listed]

    async def route(self, model: str) -> Route:
        prefix, sep, rest = model.partition("/")
        # (with --fake-model every model goes to the default upstream, prefixed or not)
        by_prefix = bool(sep) and not self.settings.default_upstream_only
        if by_prefix and prefix == "litellm":
            if not litellm_installed():
                raise ProviderMissing(
                    f"The model '{model}' needs LiteLLM: pip install 'vtai-assistants[litellm]'.")
            return Route("litellm", None, rest, self._litellm)
        if by_prefix and prefix in self.named:
            return Route(prefix, self.upstream(prefix, self.named[prefix]), rest)
        if self.default is not None:
            return Route("default", self.upstream("default", self.default), model)
        if await self._ollama_answers():
            return Route("ollama", self.upstream("ollama", self.named["ollama"]), model)
        unknown = f" ('{prefix}' is not a configured provider: known are " \
            f"{', '.join(sorted({*self.named, 'litellm'}))})" if sep else ""
        raise ProviderMissing(
            f"No model provider can serve '{model}'{unknown}. Set VTAI_UPSTREAM_BASE_URL (or "
            "OPENAI_BASE_URL and OPENAI_API_KEY) to an OpenAI-compatible endpoint, name a "
            "provider with a prefix such as 'ollama/llama3.2', configure one in "
            "VTAI_PROVIDERS, or start Ollama on localhost:11434."
        )

    def _check_not_this_server(self, name: str, base_url: str) -> None:
        """A provider at this server's own address (vLLM's default port is this server's too;
        OPENAI_BASE_URL may be set for the apps that call this server) would be this server
        answering itself: ProviderMissing, saying what to configure. Checked as the
        provider's client is made, so a provider that passes is not checked again."""
        if self.serving_at is None:
            return
        host, port = self.serving_at
        url = urllib.parse.urlsplit(base_url)
        ours = {host, "localhost", "127.0.0.1", "::1"} \
            if host in ("127.0.0.1", "localhost", "0.0.0.0", "::") else {host}
        if url.hostname in ours and url.port == port:
            setting = "VTAI_UPSTREAM_BASE_URL" if name == "default" else (
                f"VTAI_PROVIDERS='{{\"{name}\": {{\"base_url\": "
                f"\"http://localhost:PORT/v1\"}}}}'")
            raise ProviderMissing(
                f"The provider '{name}' is at {base_url}, where this server listens. Start it on "
                f"another port and set {setting}, or run this server on another port.")

    async def _ollama_answers(self) -> bool:
        if not self.settings.ollama_probe:
            return False
        checked_at, seen = self._ollama_seen
        if time.monotonic() - checked_at < _PROBE_TTL:
            return seen
        try:
            await self.upstream("ollama", self.named["ollama"]).json(
                "GET", "/models", retries=0, within=_OLLAMA_PROBE_TIMEOUT)
            seen = True
        except (ProviderMissing, UpstreamError):
            seen = False
        self._ollama_seen = (time.monotonic(), seen)
        return seen

    async def close(self) -> None:
        for upstream in self._upstreams.values():
            await upstream.close()
