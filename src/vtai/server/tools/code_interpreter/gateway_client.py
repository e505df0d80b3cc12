"""A Jupyter Kernel Gateway's (or Enterprise Gateway's) kernels: the REST API that starts,
finds, interrupts, restarts and deletes them (``/api/kernels``), and the WebSocket that
carries the kernel protocol's messages (``/api/kernels/{id}/channels``, one JSON message per
frame with its ``channel``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import uuid
from typing import Any

import aiohttp

PROTOCOL_VERSION = "5.3"
# The largest message read from a gateway: a chunk of a file (files.py bounds what is read
# per message) in base64, in JSON, with room to spare.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
READY_SECONDS = 60.0  # for a kernel to answer on a new connection (a start, a restart)
IOPUB_SECONDS = 0.5  # after a kernel_info reply, for its IOPub status to reach us


class GatewayError(Exception):
    """The gateway failed or could not be reached."""


class KernelGone(GatewayError):
    """The gateway does not know the kernel (any more)."""


class GatewayClient:
    def __init__(self, url: str, token: str | None, kernel_name: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.kernel_name = kernel_name
        self.timeout = timeout
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                headers=self.headers, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.http.request(method, f"{self.url}{path}", json=body) as response:
                if response.status == 404:
                    raise KernelGone(f"the gateway does not know {path}")
                if response.status >= 400:
                    text = (await response.text())[:500]
                    raise GatewayError(f"the kernel gateway answered {method} {path} with "
                                       f"{response.status}: {text}")
                if response.status == 204:
                    return None
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise GatewayError(f"the kernel gateway at {self.url} could not be reached: "
                               f"{err or type(err).__name__}") from err

    async def start_kernel(self) -> str:
        found = await self._request("POST", "/api/kernels", {"name": self.kernel_name})
        return str(found["id"])

    async def exists(self, kernel_id: str) -> bool:
        try:
            await self._request("GET", f"/api/kernels/{kernel_id}")
        except KernelGone:
            return False
        return True

    async def delete(self, kernel_id: str) -> None:
        with contextlib.suppress(KernelGone):
            await self._request("DELETE", f"/api/kernels/{kernel_id}")

    async def interrupt(self, kernel_id: str) -> None:
        await self._request("POST", f"/api/kernels/{kernel_id}/interrupt")

    async def restart(self, kernel_id: str) -> None:
        await self._request("POST", f"/api/kernels/{kernel_id}/restart")

    async def connect(self, kernel_id: str) -> Channels:
        url = f"{self.url}/api/kernels/{kernel_id}/channels"
        try:
            ws = await self.http.ws_connect(url.replace("http", "ws", 1),
                                            max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30,
                                            timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 404:
                raise KernelGone(f"the gateway does not know kernel {kernel_id}") from err
            raise GatewayError(f"the kernel gateway refused the kernel's channels: "
                               f"{err.status} {err.message}") from err
        except (aiohttp.ClientError, TimeoutError) as err:
            raise GatewayError(f"the kernel gateway at {self.url} could not be reached: "
                               f"{err or type(err).__name__}") from err
        channels = Channels(ws)
        if not await wait_ready(channels, READY_SECONDS):
            await channels.close()
            raise GatewayError(f"kernel {kernel_id} did not answer within "
                               f"{READY_SECONDS:g} seconds")
        return channels


class Channels:
    """The kernel protocol over one WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex
        connection = ws._response.connection  # (aiohttp keeps the socket there)
        transport = connection.transport if connection is not None else None
        self._socket = transport.get_extra_info("socket") if transport is not None else None

    def _ack_at_once(self) -> None:
        """Acknowledge what arrives without the usual delay: the gateway's server (tornado)
        leaves Nagle's algorithm on, so each message after the first of an answer would wait
        for our delayed acknowledgement (40 ms on Linux). Linux only; reset by the kernel
        now and then, hence set before every read."""
        if self._socket is not None and hasattr(socket, "TCP_QUICKACK"):
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "vtai",
                  "session": self.session, "version": PROTOCOL_VERSION,
                  "date": datetime.datetime.now(datetime.UTC).isoformat()}
        try:
            await self.ws.send_json({"header": header, "parent_header": {}, "metadata": {},
                                     "content": content, "channel": channel, "buffers": []})
        except (aiohttp.ClientError, ConnectionError) as err:
            raise GatewayError(f"the kernel's channels closed: {err}") from err
        return msg_id

    async def receive(self, seconds: float) -> dict[str, Any] | None:
        """The next message, or None after ``seconds`` without one; raises GatewayError
        when the WebSocket closed."""
        self._ack_at_once()
        try:
            frame = await self.ws.receive(timeout=seconds)
        except TimeoutError:
            return None
        if frame.type == aiohttp.WSMsgType.TEXT:
            message: dict[str, Any] = frame.json()
            return message
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                          aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise GatewayError("the kernel's channels closed")
        return {}  # a binary frame (buffers): nothing we read

    async def close(self) -> None:
        await self.ws.close()


async def wait_ready(channels: Channels, seconds: float) -> bool:
    """Whether, within ``seconds``, the kernel answers a kernel_info request and its IOPub
    messages reach us. A new connection's IOPub subscription takes a moment to settle, and
    what the kernel publishes before that is lost: a call made then would never see its
    output, nor the end of it. So the request is made again until its IOPub status comes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        msg_id = await channels.send("shell", "kernel_info_request", {})
        replied = published = False
        until = deadline
        while (left := until - loop.time()) > 0:
            msg = await channels.receive(left)
            if not msg or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg.get("channel") == "iopub":
                published = True
            elif msg.get("header", {}).get("msg_type") == "kernel_info_reply":
                replied = True
                until = min(deadline, loop.time() + IOPUB_SECONDS)
            if replied and published:
                return True
    return False
