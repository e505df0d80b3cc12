"""The HTTP/1.1 connections of ``vtai serve``: uvicorn's httptools protocol with the request
head (request line and headers) bounded in size.

Neither llhttp (which httptools wraps) nor uvicorn bounds a request head: a client could send
megabytes of headers, all held in memory (httptools even joins the pieces of one header
value by concatenation). Here the bytes of a head are counted as they are given to the parser,
and past the bound the connection is answered 431 in OpenAI's error shape and closed.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0


class BoundedHeadProtocol(HttpToolsProtocol):
    """Counts the bytes of each request head from the end of the previous request. A head
    that begins inside the same read as the previous request's end is counted from the next
    read: a head is bounded by ``max_head_bytes`` plus one read."""

    max_head_bytes = DEFAULT_MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the next bytes received belong to a request head
        self._head_bytes = 0
        self._refused = False

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the client is still sending what was refused: dropped unread
        while self._in_head and data:
            room = self.max_head_bytes - self._head_bytes
            if room <= 0:
                self._refuse()
                return
            # fed in pieces no larger than the room left, so that a head is caught as soon as
            # it passes the bound, and the bytes after a head that ends here go on as usual
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self.parser is None or self.transport.is_closing():
                return
        if data:
            super().data_received(data)

    def _refuse(self) -> None:
        self._refused = True
        message = (f"Request header fields too large: the request line and headers may take "
                   f"at most {self.max_head_bytes} bytes.")
        self.transport.write(_response(431, message, self.server_state.default_headers))
        # A close with unread bytes in the socket resets the connection, and the client may
        # lose the answer with it: the writing side is closed first, and what the client
        # still sends is read and dropped until it closes, for a few seconds at most.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _response(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": None}})
    head = [STATUS_LINE[status]]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [b"content-type: application/json\r\n",
             b"content-length: " + str(len(body)).encode() + b"\r\n",
             b"connection: close\r\n\r\n"]
    return b"".join(head) + body


def bounded_protocol(max_head_bytes: int) -> type[BoundedHeadProtocol]:
    """The protocol class to give uvicorn (``http=``), with its bound."""

    class Bounded(BoundedHeadProtocol):
        pass

    Bounded.max_head_bytes = max_head_bytes
    return Bounded
