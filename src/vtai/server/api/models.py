"""/v1/models: what the model upstreams serve, as the openai SDK's ``client.models`` reads
it (an extension: the Assistants API has no models of its own)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vtai.server.api.auth import project_id
from vtai.server.api.errors import APIError
from vtai.server.api.responses import json_response

router = APIRouter(tags=["models"])


@router.get("/models", include_in_schema=False)
async def list_models(request: Request, project: str = Depends(project_id)) -> Response:
    models = await request.app.state.providers.list_models()
    return json_response({"object": "list", "data": models})


@router.get("/models/{model:path}", include_in_schema=False)
async def retrieve_model(model: str, request: Request,
                         project: str = Depends(project_id)) -> Response:
    for listed in await request.app.state.providers.list_models():
        if listed["id"] == model:
            return json_response(listed)
    raise APIError(404, f"The model '{model}' does not exist or you do not have access to it.",
                   param="model", code="model_not_found")
