"""/v1/chat/completions and /v1/embeddings, passed on to the model's upstream (see
services/passthrough.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response, StreamingResponse

from vtai.server.api.deps import Project, Svc
from vtai.server.protocol.passthrough import ChatCompletionRequest, EmbeddingsRequest
from vtai.server.services.passthrough import Forwarded

router = APIRouter(tags=["chat"])


def _answer(forwarded: Forwarded) -> Response:
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"} \
        if forwarded.media_type.startswith("text/event-stream") else None
    return StreamingResponse(forwarded.body, status_code=forwarded.status,
                             media_type=forwarded.media_type, headers=headers)


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, svc: Svc, project: Project
                           ) -> Response:
    return _answer(await svc.passthrough.chat(body))


@router.post("/embeddings")
async def embeddings(body: EmbeddingsRequest, svc: Svc, project: Project) -> Response:
    return _answer(await svc.passthrough.embeddings(body))
