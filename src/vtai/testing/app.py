"""The fake model's ASGI app: OpenAI-compatible chat, embeddings and models, plus `/_fake/*`."""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import chat
from .embeddings import DEFAULT_DIMENSIONS, MAX_DIMENSIONS, embed, encode_base64, input_tokens
from .embeddings import parse_input as parse_embedding_input
from .steps import (
    Drop,
    Echo,
    Empty,
    Error,
    Garbage,
    Hang,
    Raw,
    Reply,
    ScriptItem,
    Step,
    StepFn,
    is_step,
    step_from_json,
)

FAKE_MODEL = "fake-model"
_log = logging.getLogger("vtai.testing")


def _strip_provider(model: str) -> str | None:
    return model.split("/", 1)[1] if "/" in model else None


MAX_RECORDED = 10_000  # request bodies kept by default
MAX_EMBEDDING_RECORDED = 1_000  # fewer embeddings bodies: each may carry 64 whole chunks


class FakeModelState:
    """Scripts, recorded requests and the default step; safe to use from any thread."""

    def __init__(self, default: Step | StepFn | None = None,
                 max_recorded: int | None = MAX_RECORDED,
                 refuse_null_content: bool = False,
                 embedding_models: Sequence[str] = ()) -> None:
        """``max_recorded``: how many request bodies are kept, the newest (None: all), so a
        fake model serving a long load test does not grow without end.
        ``refuse_null_content``: an assistant message with ``"content": null`` is answered
        with a 500, as llama-cpp-python's server answers it (its request validation wants a
        string).
        ``embedding_models``: names listed by ``GET /v1/models`` besides the chat models,
        as a server that also serves embeddings lists its embeddings models."""
        self.default = default
        self.refuse_null_content = refuse_null_content
        self.embedding_models = list(embedding_models)
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[ScriptItem]] = {}
        self._requests: deque[dict[str, Any]] = deque(maxlen=max_recorded)
        self._embedding_requests: deque[dict[str, Any]] = deque(
            maxlen=None if max_recorded is None else min(max_recorded, MAX_EMBEDDING_RECORDED))

    def script(self, model: str, *steps: ScriptItem) -> None:
        for step in steps:
            if not (is_step(step) or callable(step)):
                raise TypeError(f"not a step or a callable returning one: {step!r}")
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(steps)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            recorded = list(self._requests)
        if model is None:
            return recorded
        return [
            body
            for body in recorded
            if body.get("model") == model or _strip_provider(body.get("model", "")) == model
        ]

    def embedding_requests(self, model: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            recorded = list(self._embedding_requests)
        return [body for body in recorded if model is None or body.get("model") == model]

    def record_embeddings(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._embedding_requests.append(body)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._requests.clear()
            self._embedding_requests.clear()

    def models(self) -> list[str]:
        with self._lock:
            return list(self._scripts)

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)

    def pop(self, model: str) -> ScriptItem | None:
        """The next scripted step for `model`, by exact name first, then without its `provider/`."""
        with self._lock:
            for name in (model, _strip_provider(model)):
                queue = self._scripts.get(name) if name is not None else None
                if queue:
                    return queue.popleft()
        return None

    async def next_step(self, body: dict[str, Any]) -> Step:
        item = self.pop(body["model"])
        return await self.default_step(body) if item is None else await _resolve(item, body)

    async def default_step(self, body: dict[str, Any]) -> Step:
        if self.default is None:
            return Reply("You said: " + chat.last_user_text(body))
        return await _resolve(self.default, body)


async def _resolve(item: ScriptItem, body: dict[str, Any]) -> Step:
    if is_step(item):
        return item
    try:
        result = item(body)  # type: ignore[operator]
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        # A bug in a test's callable should reach the test as a readable 500, not a dead socket.
        _log.exception("fake model script callable failed")
        return Error(500, f"fake model script callable raised {exc!r}")
    if not is_step(result):
        return Error(500, f"fake model script callable returned {result!r}, not a step")
    return result


# ---------------------------------------------------------------------------- responses


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def _error(
    status: int, message: str, type: str = "invalid_request_error", code: str | None = None
) -> Response:
    return _json(Error(status, message, type, code).body(), status)


class _ConnectionDropped(Exception):
    """Raised after a partial response so the server closes the connection mid-body."""


class _HideDrops(logging.Filter):
    # The server logs any exception that escapes an app with a traceback; a scripted drop is
    # the intended outcome, not an error worth a traceback in the test output.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _ConnectionDropped))


def _install_drop_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in logger.filters):
        logger.addFilter(_HideDrops())


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _client_left_during(receive: Receive, seconds: float) -> bool:
    """Sleep `seconds`, returning early with True when the client disconnects."""
    with anyio.move_on_after(seconds):
        await _wait_disconnect(receive)
        return True
    return False


class _NoResponse:
    """For a client that already left: there is nobody to answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _PlannedResponse:
    """Sends a `chat.Plan`: bytes are written as they come, pauses flush and sleep.

    Consecutive chunks without a pause between them go out in one write, so an undelayed
    reply costs one send however many chunks it has.
    """

    def __init__(self, plan: chat.Plan, media_type: str, drop: bool = False) -> None:
        self.plan = plan
        self.headers = [(b"content-type", media_type.encode()), (b"cache-control", b"no-cache")]
        self.drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        if any(isinstance(item, float) for item in self.plan):
            left = False
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal left
                    await _wait_disconnect(receive)
                    left = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._send_plan(send)
                group.cancel_scope.cancel()
            if left:
                return
        else:
            await self._send_plan(send)
        if self.drop:
            raise _ConnectionDropped
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_plan(self, send: Send) -> None:
        pending: list[bytes] = []
        for item in self.plan:
            if isinstance(item, bytes):
                pending.append(item)
                continue
            if pending:
                await send(
                    {"type": "http.response.body", "body": b"".join(pending), "more_body": True}
                )
                pending = []
            await anyio.sleep(item)
        if pending:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})


_SSE = "text/event-stream; charset=utf-8"
_JSON = "application/json"


async def _answer(
    state: FakeModelState, step: Step, body: dict[str, Any], receive: Receive
) -> ASGIApp:
    model: str = body["model"]
    stream = bool(body.get("stream"))
    if isinstance(step, Hang):
        if await _client_left_during(receive, step.seconds):
            return _NoResponse()
        step = await state.default_step(body)
        if isinstance(step, Hang):  # a default that hangs has hung once already; answer now
            step = Reply("You said: " + chat.last_user_text(body))
    if isinstance(step, Error):
        return _json(step.body(), step.status, step.headers)
    if isinstance(step, Garbage):
        if stream:
            # Framed as an SSE event, so a streaming client gets past the framing and fails on
            # the payload, the way a broken upstream usually shows up.
            return Response(f"data: {step.body}\n\n", media_type=_SSE)
        return Response(step.body, media_type=_JSON)
    if isinstance(step, Empty):
        return Response(b"", media_type=_SSE if stream else _JSON)
    if isinstance(step, Raw):
        return Response(step.body.encode(), step.status, media_type=step.content_type)
    if isinstance(step, Echo):
        step = Reply(chat.echo_text(body))
    if isinstance(step, Drop):
        return _drop(step, model, stream)

    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    writer = chat.ChunkWriter(model)
    if isinstance(step, Reply):
        plan = chat.reply_plan(writer, step, logprobs=int(body.get("top_logprobs") or 0)
                               if body.get("logprobs") else None)
        finish = step.finish_reason
        usage = chat.usage(body, chat.count_tokens(step.content), step.usage)
        message: dict[str, Any] = {"content": step.content}
        if step.reasoning:
            message["reasoning_content"] = step.reasoning
    else:
        plan = chat.tool_calls_plan(writer, step)
        finish = "tool_calls"
        usage = chat.usage(body, chat.tool_calls_tokens(step))
        message = chat.tool_calls_message(step)
    if stream:
        chat.finish_plan(plan, writer, finish, usage if include_usage else None)
        return _PlannedResponse(plan, _SSE)
    pause = sum(item for item in plan if isinstance(item, float))
    if pause and await _client_left_during(receive, pause):
        return _NoResponse()
    return Response(chat.completion(model, message, finish, usage), media_type=_JSON)


def _drop(step: Drop, model: str, stream: bool) -> ASGIApp:
    if not stream:
        head = chat.completion(model, {"content": step.text}, "stop", {})
        return _PlannedResponse([head[: len(head) // 2]], _JSON, drop=True)
    writer = chat.ChunkWriter(model)
    pieces = chat.split_words(step.text)[: max(step.after_chunks, 0)]
    return _PlannedResponse(chat.reply_plan(writer, Reply(step.text), pieces), _SSE, drop=True)


# ---------------------------------------------------------------------------- endpoints


def _null_content(messages: list[Any]) -> str | None:
    """What llama-cpp-python's server says of an assistant message sent with ``"content":
    null`` (beside its tool calls), or None if there is none."""
    for position, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant" \
                and "content" in message and message["content"] is None:
            return (f"1 validation error:\n  {{'type': 'string_type', 'loc': ('body', "
                    f"'messages', {position}, 'ChatCompletionRequestAssistantMessage', "
                    "'content'), 'msg': 'Input should be a valid string', 'input': None}")
    return None


async def _read_json(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise HTTPException(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "The request body must be a JSON object.")
    return body


def _endpoints(state: FakeModelState) -> list[Route]:
    async def chat_completions(request: Request) -> ASGIApp:
        body = await _read_json(request)
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _error(400, "you must provide a model parameter")
        if not isinstance(body.get("messages"), list):
            return _error(
                400, "Missing required parameter: 'messages'.", code="missing_required_parameter"
            )
        state.record(body)
        if state.refuse_null_content and (refused := _null_content(body["messages"])):
            return _error(500, refused, "internal_server_error")
        step = await state.next_step(body)
        return await _answer(state, step, body, request.receive)

    async def embeddings(request: Request) -> Response:
        body = await _read_json(request)
        try:
            items = parse_embedding_input(body.get("input"))
        except ValueError as exc:
            return _error(400, str(exc))
        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = DEFAULT_DIMENSIONS
        if type(dimensions) is not int or not 0 < dimensions <= MAX_DIMENSIONS:
            return _error(400, f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.")
        state.record_embeddings(body)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = embed(item, dimensions)
            encoded: Any = encode_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(input_tokens(item) for item in items)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or FAKE_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def model_object(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "vtai-fake"}

    async def list_models(request: Request) -> Response:
        names = dict.fromkeys([FAKE_MODEL, *state.embedding_models, *state.models()])
        return _json({"object": "list", "data": [model_object(name) for name in names]})

    async def retrieve_model(request: Request) -> Response:
        # Every name is served (unscripted ones get the default answer), so every name exists.
        return _json(model_object(request.path_params["model"]))

    async def fake_script(request: Request) -> Response:
        body = await _read_json(request)
        model, steps = body.get("model"), body.get("steps")
        if not isinstance(model, str) or not model or not isinstance(steps, list):
            return _error(400, "expected {'model': str, 'steps': [step, ...]}")
        try:
            parsed = [step_from_json(step) for step in steps]
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        state.script(model, *parsed)
        return _json({"model": model, "queued": len(parsed)})

    async def fake_requests(request: Request) -> Response:
        return _json({"object": "list", "data": state.requests(request.query_params.get("model"))})

    async def fake_reset(request: Request) -> Response:
        state.reset()
        return _json({"ok": True})

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        Route("/_fake/script", fake_script, methods=["POST"]),
        Route("/_fake/requests", fake_requests, methods=["GET"]),
        Route("/_fake/reset", fake_reset, methods=["POST"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} not allowed for {request.url.path}"
    else:
        message = exc.detail
    return _error(exc.status_code, message)


def create_app(state: FakeModelState | None = None) -> Starlette:
    """The fake model as an ASGI app; `app.state.fake` is its `FakeModelState`."""
    _install_drop_filter()
    fake = state if state is not None else FakeModelState()
    app = Starlette(
        routes=_endpoints(fake),
        exception_handlers={HTTPException: _http_error},
    )
    app.state.fake = fake
    return app
