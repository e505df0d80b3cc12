"""JSON responses from bytes the server already holds (stored objects are never re-encoded)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(body: str | bytes | dict[str, Any], status_code: int = 200) -> Response:
    if isinstance(body, dict):
        body = orjson.dumps(body)
    return Response(body, status_code=status_code, media_type="application/json")


def deleted(object_id: str, object_name: str) -> Response:
    return json_response({"id": object_id, "object": object_name, "deleted": True})
