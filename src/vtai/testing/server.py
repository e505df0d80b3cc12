"""Run the fake model over real HTTP: in a background thread for tests, or blocking for the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import uvicorn

from vtai.heap import settle_heap

from .app import FakeModelState, create_app
from .steps import ScriptItem, Step, StepFn

_STOP_GRACE = 2


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn lets running requests finish, but a hung or slow scripted stream could hold
        # stop() for its whole length. Closing the sockets first makes every handler see a
        # client disconnect and end on its own, the way clients see a model server going away.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
        await super().shutdown(sockets)


class FakeModelServer:
    """A fake OpenAI-compatible model on a local port, scripted from Python.

        with FakeModelServer() as fm:
            fm.script("m", Reply("Hello"))
            client = OpenAI(base_url=fm.base_url, api_key="x")
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, default: Step | StepFn | None = None,
        refuse_null_content: bool = False, embedding_models: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.state = FakeModelState(default, refuse_null_content=refuse_null_content,
                                    embedding_models=embedding_models)
        self.app = create_app(self.state)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> FakeModelServer:
        """Serve in a daemon thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeModelServer is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        # log_config=None and log_level=None leave the host process's logging untouched.
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=_STOP_GRACE,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"fake-model:{self.port}",
            daemon=True,
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise RuntimeError("the fake model server failed to start")
            time.sleep(0.002)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (clients still reading see them drop)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(_STOP_GRACE + 5)
        self._server = self._thread = None

    def script(self, model: str, *steps: ScriptItem) -> None:
        """Queue steps for `model`; each chat request for it takes the next one."""
        self.state.script(model, *steps)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Chat request bodies received for `model` (all models if None), oldest first."""
        return self.state.requests(model)

    def embedding_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Embeddings request bodies received for `model` (all models if None), oldest
        first."""
        return self.state.embedding_requests(model)

    def reset(self) -> None:
        """Forget all scripts and recorded requests."""
        self.state.reset()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run(host: str = "127.0.0.1", port: int = 8001, log_level: str = "info") -> None:
    """Serve the fake model until interrupted (`vtai fake-model`)."""
    app = create_app()
    settle_heap()  # no collector pauses in the answers' timing
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
