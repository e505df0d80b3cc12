"""Server settings: one class, read from the environment with the prefix ``VTAI_``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".vtai"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTAI_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    db_pool_size: int = 20  # PostgreSQL connections per process, kept open (no overflow)
    host: str = "127.0.0.1"
    port: int = 8000
    # Prometheus metrics of `vtai serve` on a port of their own (None: not served); they count
    # over all projects, so they are kept off the API port and, by default, on loopback.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Comma-separated; an entry is "key" (a project of its own) or "project:key".
    api_keys: str = ""
    run_worker: bool = True  # execute runs in this process (vtai serve --no-worker: False)
    shutdown_grace: float = 10.0  # seconds running runs get to finish on SIGTERM
    run_lease_seconds: int = 30  # a run whose worker stops renewing this long is resumed
    # Model upstreams (see providers/): the default one, and named ones as JSON
    # {"ollama": {"base_url": "...", "api_key": "..."}}.
    upstream_base_url: str | None = None
    upstream_api_key: str | None = None
    providers: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Every model to the default upstream, whatever its prefix (vtai serve --fake-model).
    default_upstream_only: bool = False
    ollama_probe: bool = True
    upstream_max_retries: int = 3
    upstream_timeout: float = 600.0
    run_expires_after: int = 600
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    # Limits (OpenAI's where it has one). 0 turns a limit off where noted.
    max_file_bytes: int = 512 * 1024 * 1024
    max_request_bytes: int = 16 * 1024 * 1024  # JSON request bodies
    # A request's line and headers together (431 past it); at least 1 KiB.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_message_chars: int = 256_000  # text of one message
    max_content_parts: int = 100  # content parts of one message
    max_attachments: int = 20  # attachments of one message
    max_function_parameters_bytes: int = 64 * 1024  # a function tool's JSON schema
    max_active_runs_per_project: int = 1000  # 0: no limit
    rate_limit_per_minute: int = 0  # requests per key per minute; 0: no limit
    # Exposure: a public bind without keys needs this; CORS origins, comma-separated.
    insecure_no_auth: bool = False
    cors_origins: str = ""

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'vtai.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def env_keys(self) -> dict[str, str]:
        """Map of sha256(key) to project id for the keys given in ``VTAI_API_KEYS``."""
        keys: dict[str, str] = {}
        for entry in self.api_keys.split(","):
            entry = entry.strip()
            if not entry:
                continue
            project, sep, key = entry.partition(":")
            if not sep:
                key, project = entry, ""
            digest = hash_key(key)
            keys[digest] = project or f"proj_{digest[:16]}"
        return keys


def hash_key(key: str) -> str:
    """API keys are stored and compared only as their sha256 digest."""
    return hashlib.sha256(key.encode()).hexdigest()
