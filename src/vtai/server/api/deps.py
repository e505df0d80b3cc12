"""What a route needs, as typed FastAPI dependencies: the caller's project, list parameters,
``include[]``, and the services (one typed read of the app's state, here)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from vtai.server.api.auth import project_id
from vtai.server.protocol.lists import ListParams
from vtai.server.services.container import Services
from vtai.server.services.run_reads import check_include


async def services(request: Request) -> Services:  # async: see list_params
    found: Services = request.app.state.services
    return found


async def list_params(  # async: FastAPI runs sync dependencies in a thread
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, max_length=64),
    before: str | None = Query(None, max_length=64),
) -> ListParams:
    return ListParams(limit=limit, order=order, after=after, before=before)


async def include_content(
        include: Annotated[list[str] | None, Query(alias="include[]")] = None) -> bool:
    """Whether ``include[]`` asks for file_search results' content in steps."""
    return check_include(include)


Svc = Annotated[Services, Depends(services)]
Project = Annotated[str, Depends(project_id)]
Page = Annotated[ListParams, Depends(list_params)]
WithContent = Annotated[bool, Depends(include_content)]
