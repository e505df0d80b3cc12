"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation only.

The load generator shares the machine's two cores with the server, so every microsecond it
spends per request is taken from the server being measured. httpx costs about 0.4 ms of CPU
per request here; this client, which knows only what the benchmarks send (JSON bodies, one
request at a time per connection, Content-Length or chunked responses), costs a fraction of
that. It is not a general HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class HTTPError(Exception):
    pass


class RawConnection:
    """One keep-alive connection to `base_url` (`http://host:port/prefix`)."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.prefix = url.path.rstrip("/")
        self._host_header = f"Host: {self.host}:{self.port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def _send(self, method: str, path: str, body: bytes | None
                    ) -> tuple[asyncio.StreamReader, int, int | None, bool, bool]:
        """Send a request and read the response head: (reader, status, content length,
        chunked, keep-alive)."""
        reader, writer = await self._connect()
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode() + self._host_header
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: " + \
                str(len(body)).encode() + b"\r\n"
        writer.write(head + b"\r\n" + (body or b""))
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            await self.close()
            raise HTTPError(f"connection closed before the response: {err!r}") from err
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        chunked, keep_alive = False, True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        return reader, status, length, chunked, keep_alive

    async def stream(self, method: str, path: str, body: bytes | None = None
                     ) -> AsyncIterator[bytes]:
        """Send one request and yield its chunked response body (an SSE stream) piece by
        piece as it arrives; HTTPError if the status is not 200."""
        reader, status, length, chunked, keep_alive = await self._send(method, path, body)
        if status != 200 or not chunked:
            data = await reader.readexactly(length) if length is not None else b""
            await self.close()
            raise HTTPError(f"HTTP {status}: {data[:300]!r}")
        try:
            async for piece in self._chunks(reader):
                yield piece
        except BaseException:
            await self.close()  # left mid-body: the connection cannot be reused
            raise
        if not keep_alive:
            await self.close()

    async def request(self, method: str, path: str, body: bytes | None = None
                      ) -> tuple[int, bytes]:
        """Send one request and read the whole response: (status, body)."""
        reader, status, length, chunked, keep_alive = await self._send(method, path, body)
        if chunked:
            data = await self._read_chunked(reader)
        elif length is not None:
            data = await reader.readexactly(length)
        else:
            data = await reader.read()
            keep_alive = False
        if not keep_alive:
            await self.close()
        return status, data

    @classmethod
    async def _read_chunked(cls, reader: asyncio.StreamReader) -> bytes:
        return b"".join([piece async for piece in cls._chunks(reader)])

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        """A chunked body's pieces, up to and with its last (empty) chunk's end."""
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readline()
                return
            yield await reader.readexactly(size)
            await reader.readline()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
