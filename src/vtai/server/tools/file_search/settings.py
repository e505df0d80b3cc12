"""Settings of file search, from the environment (prefix ``VTAI_``) like the server's own."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FileSearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTAI_", extra="ignore")

    # An OpenAI-compatible /v1/embeddings endpoint; without one, the bundled local model.
    embeddings_base_url: str | None = None
    embeddings_model: str = "text-embedding-3-small"
    embeddings_api_key: str | None = None
    embeddings_batch_size: int = 64  # inputs per request to the endpoint
    # ONNX Runtime threads of the local model; 0 lets it use every core.
    embeddings_threads: int = 0
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
