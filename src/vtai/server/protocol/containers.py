"""/v1/containers request bodies: a container (a code interpreter session of its own) and the
files put into it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from vtai.server.protocol.common import Strict

DEFAULT_MINUTES = 20  # OpenAI's: a container expires 20 minutes after it was last active


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    minutes: int = Field(ge=1, le=10_080)


class NetworkPolicy(Strict):
    type: Literal["disabled"]  # (a container reaches no network here)


class ContainerCreate(Strict):
    name: str = Field(max_length=256)
    file_ids: list[str] = Field(default_factory=list, max_length=100)
    expires_after: ExpiresAfter | None = None
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: NetworkPolicy | None = None
    skills: list[Any] | None = None  # (accepted and ignored: OpenAI's hosted skills)


class ContainerFileFromFile(Strict):
    file_id: str = Field(min_length=1, max_length=64)
