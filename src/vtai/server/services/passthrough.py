"""Chat completions and embeddings, passed on to the upstream that serves the model (the same
routing as runs), under the caller's key, project and limits: the body goes on as the caller
sent it but for the model's name, and the upstream's answer comes back as it is, streamed
when it streams (an assistant message's ``"content": null`` is dropped, which some servers
refuse). An upstream's error becomes an error in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from vtai.server.errors import Unavailable, UpstreamRefused, bad_request
from vtai.server.protocol.passthrough import ChatCompletionRequest, EmbeddingsRequest
from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.routing import ProviderMissing, Providers

# Upstream statuses passed on to the caller as they are: about the request itself. Others
# (its key refused, its own failure) are this server's upstream failing: 502.
CALLERS_FAULT = {400, 404, 409, 413, 422, 429}


@dataclass
class Forwarded:
    """The upstream's answer: its status, content type and body, as it comes."""

    status: int
    media_type: str
    body: AsyncIterator[bytes]


async def _relay(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for piece in response.content.iter_any():
            yield piece
    finally:
        response.release()


class PassThrough:
    def __init__(self, providers: Providers) -> None:
        self.providers = providers

    async def chat(self, body: ChatCompletionRequest) -> Forwarded:
        # An assistant message's ``"content": null`` (beside its tool calls) is left out:
        # some servers refuse it (llama-cpp-python's), and it says nothing.
        body.messages = [{k: v for k, v in m.items() if not (k == "content" and v is None)}
                         for m in body.messages]
        return await self._forward("/chat/completions", body)

    async def embeddings(self, body: EmbeddingsRequest) -> Forwarded:
        return await self._forward("/embeddings", body)

    async def _forward(self, path: str, body: ChatCompletionRequest | EmbeddingsRequest
                       ) -> Forwarded:
        try:
            route = await self.providers.route(body.model)
        except ProviderMissing as err:
            raise bad_request(str(err), "model", "model_not_found") from err
        if route.upstream is None:
            raise bad_request(f"The model '{body.model}' is served through LiteLLM, which this "
                              "server does not pass requests on to.", "model")
        params: dict[str, Any] = {**body.model_dump(exclude_unset=True), "model": route.model}
        upstream = route.upstream
        try:
            response = await upstream.send("POST", upstream.base_url + path,
                                           orjson.dumps(params))
        except UpstreamError as err:
            if err.status in CALLERS_FAULT:
                raise UpstreamRefused(err.message, err.status) from err
            who = f"The model provider '{route.provider}'"
            if err.status is None:
                raise Unavailable(f"{who} could not be reached: {err.message}") from err
            raise UpstreamRefused(f"{who} failed: {err.message}", 502) from err
        return Forwarded(response.status,
                         response.headers.get("Content-Type", "application/json"),
                         _relay(response))

