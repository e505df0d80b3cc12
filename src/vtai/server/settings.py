"""Server settings, read once from the environment: ``Settings`` (prefix ``VTAI_``), with
the built-in tools' own (``retrieval``: ``VTAI_``; ``code``: ``VTAI_CODE_``) nested in it.
This is the one module that reads the environment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".vtai"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vtai"


class RetrievalSettings(BaseSettings):
    """Vector stores and file search (prefix ``VTAI_``)."""

    model_config = SettingsConfigDict(env_prefix="VTAI_", extra="ignore")

    # An OpenAI-compatible /v1/embeddings endpoint for new vector stores; without one, the
    # default upstream's embeddings model if it serves one, else the bundled local model.
    embeddings_base_url: str | None = None
    embeddings_model: str = "text-embedding-3-small"
    embeddings_api_key: str | None = None
    embeddings_batch_size: int = 64  # inputs per request to the endpoint
    # New vector stores use the local model, whatever an endpoint or the upstream serves.
    embeddings_local: bool = False
    # The local model: static token vectors distilled from MiniLM
    # (thousands of pages a second), or the MiniLM transformer (about 11 on 2 cores).
    embeddings_local_model: Literal["static", "minilm"] = "static"
    # ONNX Runtime threads of the transformer; 0 lets it use every core.
    embeddings_threads: int = 0
    # Where the static model's matrix is kept once distilled (it depends only on the
    # installed model, so every data directory of the user shares it).
    embeddings_cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Tokens of one file beyond which it fails (OpenAI's limit).
    search_max_file_tokens: int = 5_000_000
    # How long a file_search call waits for files just attached to the thread to be indexed.
    search_wait_seconds: float = 60.0
    # Vectors of vector stores kept in memory by each process for vector search.
    search_cache_mb: int = 1024
    # A file whose ingestion stops renewing this lease (its process died) is taken up again.
    search_lease_seconds: int = 30
    # Files one request may add to a vector store: a file batch's file_ids or files (OpenAI's
    # limit is 2000), and a new store's file_ids (at most 500 in any case, as OpenAI's).
    max_batch_files: int = Field(default=2000, ge=1)


class CodeInterpreterSettings(BaseSettings):
    """The code interpreter (prefix ``VTAI_CODE_``)."""

    model_config = SettingsConfigDict(env_prefix="VTAI_CODE_", extra="ignore")

    # local: kernels on this host, in the sandbox below. gateway: kernels through a Jupyter
    # Kernel Gateway or Enterprise Gateway (gateway_url), whose kernels any worker on any
    # host continues (their ids are stored); isolation is then the gateway's.
    backend: Literal["local", "gateway"] = "local"
    gateway_url: str | None = None
    gateway_token: str | None = None  # sent as "Authorization: token ..."
    gateway_kernel: str = "python3"  # the kernelspec the gateway starts
    gateway_request_timeout: float = Field(default=30, gt=0)  # seconds per REST request
    # bwrap: each kernel in a bubblewrap sandbox (the `bubblewrap` package): as root, each
    # session with a uid of its own; as another user, in a user namespace of its own.
    # none: kernels run as the server's user with only rlimits; refused unless
    # allow_unsandboxed is true as well.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    pool_size: int = Field(default=2, ge=0, le=32)  # started kernels waiting for a thread
    # Threads with a live kernel; past it, the least recently used one is stopped.
    max_sessions: int = Field(default=32, ge=1, le=192)
    idle_seconds: float = Field(default=3600, gt=0)  # a thread's kernel is stopped after this
    timeout: float = Field(default=60, gt=0)  # wall-clock seconds per call
    cpu_seconds: float = Field(default=60, gt=0)  # CPU seconds per call
    # CPU seconds a kernel may use between calls (threads the code left running) before it
    # is stopped; its next call starts a new one.
    idle_cpu_seconds: float = Field(default=5, gt=0)
    memory_mb: int = Field(default=2048, ge=64)  # address space of each process of a session
    max_processes: int = Field(default=64, ge=8)  # processes and threads of a session's uid
    disk_mb: int = Field(default=512, ge=1)  # /mnt/data and /tmp of a session together
    # The code's output kept in a call's logs (outputs.ALLOWANCE more for notes and tracebacks).
    max_output_chars: int = Field(default=20_000, ge=100)
    max_output_files: int = Field(default=20, ge=0)  # files written per call that become Files
    max_output_images: int = Field(default=10, ge=0)  # displayed images per call kept as Files
    # What is copied out of the sandbox as Files (images and written files) lands in the
    # server's blob store: a size per file, and bytes per session (a thread's kernel).
    max_output_file_mb: int = Field(default=50, ge=1)
    max_session_output_mb: int = Field(default=200, ge=0)
    start_timeout: float = Field(default=60, gt=0)  # seconds a kernel may take to start
    # Sandboxed sessions run as uid_base + 256 * pid + n, a uid for each live session of
    # each process, so that a session's process limit and file ownership are its own. With
    # pids below 2**22 (Linux's most), uids stay below 2**32 - 1.
    uid_base: int = Field(default=2_000_000_000, ge=1000, le=3_000_000_000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTAI_", extra="ignore",
                                      populate_by_name=True)

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
    upstream_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VTAI_UPSTREAM_BASE_URL", "OPENAI_BASE_URL"))
    upstream_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("VTAI_UPSTREAM_API_KEY", "OPENAI_API_KEY"))
    # The CA bundle for https upstreams (certifi's by default), as the openai SDK reads it.
    ssl_cert_file: str | None = Field(default=None, validation_alias="SSL_CERT_FILE")
    ssl_cert_dir: str | None = Field(default=None, validation_alias="SSL_CERT_DIR")
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
    # The built-in tools' settings (their own environment variables, read with these).
    retrieval: RetrievalSettings = Field(default_factory=lambda: RetrievalSettings())
    code: CodeInterpreterSettings = Field(default_factory=lambda: CodeInterpreterSettings())

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
