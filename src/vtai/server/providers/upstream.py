"""One OpenAI-compatible model server, reached over one aiohttp session: every request this
server sends to a model server goes through here (streamed chat completions for runs, the
models it lists, embeddings), retried as the openai SDK retries (see chat_stream.py)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import aiohttp
import orjson

from vtai.server.providers import chat_stream
from vtai.server.providers.chat_stream import (
    CONNECTIONS,
    USER_AGENT,
    Answer,
    UpstreamError,
    env_proxy,
    error_message,
    retry_delay,
    should_retry,
)


class Upstream:
    """A model server at ``base_url`` (ending with /v1 or alike)."""

    def __init__(self, base_url: str, api_key: str, *, max_retries: int = 2,
                 timeout: float = 600.0, tls: ssl.SSLContext | None = None) -> None:
        """``timeout``: seconds to connect and between two reads; ``tls``: the context for
        https servers (routing shares one among providers), None for aiohttp's default."""
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}",
                        "Content-Type": "application/json",
                        "Accept": "text/event-stream",
                        "User-Agent": USER_AGENT}
        self.proxy = env_proxy(self.url)
        self.max_retries = max_retries
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                             sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tls = tls

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=CONNECTIONS, limit_per_host=0,
                                             ssl=self._tls if self._tls is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def send(self, method: str, url: str, body: bytes | None = None, *,
                   retries: int | None = None, within: float | None = None
                   ) -> aiohttp.ClientResponse:
        """The answer to a request, once its headers came; connection errors, timeouts and
        the answers the SDK retries are retried (``retries``: this many at most, the
        server's setting by default; ``within``: seconds for each attempt in all, instead of
        the server's timeouts between reads). An error answer raises UpstreamError."""
        most = self.max_retries if retries is None else retries
        done = 0
        while True:
            try:
                response = await self._client().request(
                    method, url, data=body, headers=self.headers, proxy=self.proxy,
                    timeout=self.timeout if within is None
                    else aiohttp.ClientTimeout(total=within))
            except (aiohttp.ClientError, TimeoutError) as err:
                if done >= most:
                    raise UpstreamError(f"Connection error: {str(err) or repr(err)}",
                                        unreachable=True) from err
                await chat_stream.pause(retry_delay(done))
                done += 1
                continue
            if response.status < 400:
                return response
            try:
                text = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                text = b""
            finally:
                response.release()
            if done >= most or not should_retry(response):
                raise UpstreamError(error_message(response.status, text), response.status)
            await chat_stream.pause(retry_delay(done, response.headers))
            done += 1

    async def _open(self, params: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.send("POST", self.url, orjson.dumps(params))

    async def open(self, params: dict[str, Any]) -> Answer:
        """Ask for a streamed chat completion and wait for the answer to begin."""
        return Answer(await self._open(params), functools.partial(self._open, params),
                      self.max_retries)

    async def stream(self, params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The answer's chunks as dicts, as the upstream sent them."""
        async with aclosing((await self.open(params)).chunks()) as chunks:
            async for chunk in chunks:
                yield chunk

    async def json(self, method: str, path: str, body: Any = None, *,
                   retries: int | None = None, within: float | None = None) -> Any:
        """The JSON answer to a request (``path`` under the base URL); UpstreamError when
        there is none, or it is not JSON."""
        response = await self.send(
            method, self.base_url + path, None if body is None else orjson.dumps(body),
            retries=retries, within=within)
        try:
            return orjson.loads(await response.read())
        except orjson.JSONDecodeError as err:
            raise UpstreamError(f"{self.base_url}{path} answered with data that is not "
                                f"JSON: {err}") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise UpstreamError(f"{self.base_url}{path}: the answer broke off: {err!r}",
                                broke_off=True) from err
        finally:
            response.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
