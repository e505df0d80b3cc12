"""Embeddings from OpenAI-compatible endpoints: the one configured for embeddings
(``VTAI_EMBEDDINGS_BASE_URL``), or the server's default upstream when it serves an
embeddings model. Every request that file search sends to a model server is made here,
through the server's one upstream client (providers/upstream.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vtai.server.providers.chat_stream import UpstreamError
from vtai.server.providers.upstream import Upstream
from vtai.server.retrieval.chunking import Chunk
from vtai.server.retrieval.embeddings import EmbeddingUnavailable, normalize
from vtai.server.retrieval.tokens import Tokens

# OpenAI's embeddings models, best first (3-small before 3-large: as good on retrieval
# benchmarks within a few points, at a sixth of the price and half the vector size).
OPENAI_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
PROBE_SECONDS = 3.0  # for each request asking what an upstream serves


def pick_embedding_model(ids: Iterable[str]) -> str | None:
    """The embeddings model among the ids a server lists: OpenAI's, else the first by name
    whose id says "embed" (Ollama's nomic-embed-text, mxbai-embed-large, ...: a chat model's
    id never does); None if there is none."""
    listed = set(ids)
    for name in OPENAI_MODELS:
        if name in listed:
            return name
    return min((model for model in listed if "embed" in model.lower()), default=None)


class Endpoint:
    """One OpenAI-compatible server, shared by the models it embeds with."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.upstream = Upstream(base_url, api_key or "unused")

    async def embedding_model(self) -> str:
        """The embeddings model it serves: listed by ``GET /models`` and answering an
        embeddings request (a model list may name what the server does not embed with).
        EmbeddingUnavailable otherwise."""
        try:
            page = await self.upstream.json("GET", "/models", retries=0, within=PROBE_SECONDS)
            model = pick_embedding_model(listed["id"] for listed in page["data"]
                                         if isinstance(listed.get("id"), str))
            if model is None:
                raise EmbeddingUnavailable(f"{self.base_url} lists no embeddings model")
            await self.embed(model, ["Is this an embeddings model?"], retries=0)
        except (UpstreamError, TypeError, KeyError, AttributeError) as err:
            raise EmbeddingUnavailable(f"{self.base_url}: {err}") from err
        return model

    async def embed(self, model: str, texts: list[str], retries: int | None = None
                    ) -> list[list[float]]:
        """The vectors of ``texts``, in their order."""
        answer = await self.upstream.json("POST", "/embeddings",
                                          {"model": model, "input": texts}, retries=retries,
                                          within=PROBE_SECONDS if retries == 0 else None)
        rows = sorted(answer["data"], key=lambda item: item["index"])
        return [row["embedding"] for row in rows]

    async def close(self) -> None:
        await self.upstream.close()


class RemoteEmbedder:
    """A model of an endpoint; a chunk is sent whole, ``batch_size`` texts a request."""

    def __init__(self, endpoint: Endpoint, model: str, batch_size: int) -> None:
        self.endpoint = endpoint
        self.model = model
        self.batch_size = batch_size

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        try:
            for begin in range(0, len(texts), self.batch_size):
                rows += await self.endpoint.embed(self.model,
                                                  list(texts[begin:begin + self.batch_size]))
        except (UpstreamError, TypeError, KeyError) as err:
            raise EmbeddingUnavailable(f"The embeddings model '{self.model}' of "
                                       f"{self.endpoint.base_url} failed: {err}") from err
        return normalize(np.asarray(rows, dtype=np.float32))

    async def embed_chunks(self, tokens: Tokens, chunks: Sequence[Chunk]) -> np.ndarray:
        return await self._embed([c.text for c in chunks])

    async def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return await self._embed(queries)

    async def close(self) -> None:
        return None  # (the endpoint's client is closed with the endpoint)
