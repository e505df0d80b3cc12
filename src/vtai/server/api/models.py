"""/v1/models: what the model upstreams serve, as the openai SDK's ``client.models`` reads
it (an extension: the Assistants API has no models of its own)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vtai.server.api.deps import Project, Svc
from vtai.server.api.json import json_response

router = APIRouter(tags=["models"])


@router.get("/models", include_in_schema=False)
async def list_models(svc: Svc, project: Project) -> Response:
    return json_response({"object": "list", "data": await svc.models.list()})


@router.get("/models/{model:path}", include_in_schema=False)
async def retrieve_model(model: str, svc: Svc, project: Project) -> Response:
    return json_response(await svc.models.retrieve(model))
