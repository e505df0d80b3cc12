"""Every route's dependencies and handler are coroutines: FastAPI runs a plain function in a
thread of its pool, a hop that cost each request more server CPU than its own work (a sync
`services` dependency made message requests about 0.3 ms dearer)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from vtai.server.app import create_app
from vtai.server.settings import Settings


def _calls(dependant: Dependant) -> Iterator[Any]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # (an included router, as this FastAPI keeps it)
        router = getattr(route, "original_router", None) or getattr(route, "router", None)
        if router is not None and getattr(router, "routes", None):
            yield from _api_routes(router.routes)


def test_no_route_runs_a_plain_function_in_a_thread(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = list(_api_routes(app.routes))
    assert len(routes) > 50
    plain = sorted({f"{route.path}: {call.__module__}.{call.__qualname__}"
                    for route in routes for call in _calls(route.dependant)
                    if not inspect.iscoroutinefunction(call)})
    assert plain == []
