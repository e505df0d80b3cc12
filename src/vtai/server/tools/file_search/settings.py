"""Settings of file search, from the environment (prefix ``VTAI_``) like the server's own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vtai"


class FileSearchSettings(BaseSettings):
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
