"""Which model embeds what.

A vector store keeps the model of its first indexed file (``ingest.py``), so its chunks and
its queries are always embedded by one model. A store's first file gets, in this order:

- the local model, with ``VTAI_EMBEDDINGS_LOCAL=true``;
- ``VTAI_EMBEDDINGS_MODEL`` of ``VTAI_EMBEDDINGS_BASE_URL``, when that is set;
- the embeddings model of the server's default upstream, when it serves one (OpenAI's
  text-embedding-3-small, an Ollama or vLLM model named "...embed..."): asked in the
  background when the process starts, a few seconds at most, so that start-up never waits;
- else the local model (``VTAI_EMBEDDINGS_LOCAL_MODEL``), the offline fallback. When that is
  the static one and its matrix is not cached yet, it is distilled in the background at
  start, so that the first search or ingestion does not wait 15-30 s for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from vtai.server.retrieval.embeddings import Embedder, LocalEmbedder, StaticEmbedder
from vtai.server.retrieval.remote import Endpoint, RemoteEmbedder
from vtai.server.settings import RetrievalSettings

log = logging.getLogger("vtai.file_search")

DECIDE_SECONDS = 5.0  # how long a new store's first file may wait for the upstream's answer


class Embedders:
    """The embedding models of this process, by name, and the one a new store gets."""

    def __init__(self, settings: RetrievalSettings, upstream: Mapping[str, str] | None
                 ) -> None:
        """``upstream``: the server's default upstream (``base_url``, ``api_key``), if any."""
        self.settings = settings
        self.transformer = LocalEmbedder(settings.embeddings_threads)
        self.static = StaticEmbedder(self.transformer, settings.embeddings_cache_dir)
        self.local: Embedder = self.static if settings.embeddings_local_model == "static" \
            else self.transformer
        self._local: dict[str, Embedder] = {e.model: e for e in (self.static, self.transformer)}
        self.endpoint = Endpoint(settings.embeddings_base_url, settings.embeddings_api_key) \
            if settings.embeddings_base_url else None
        self.upstream = Endpoint(upstream["base_url"], upstream.get("api_key")) \
            if upstream else None
        self._remote: dict[str, RemoteEmbedder] = {}
        self._for_new, self._why = self._configured()
        self._decided = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _configured(self) -> tuple[Embedder | None, str]:
        """The model of new stores when the settings decide it, and why; None: ask the
        upstream."""
        if self.settings.embeddings_local:
            return self.local, "VTAI_EMBEDDINGS_LOCAL"
        if self.endpoint is not None:
            return self.get(self.settings.embeddings_model), \
                f"VTAI_EMBEDDINGS_BASE_URL {self.endpoint.base_url}"
        if self.upstream is not None:
            return None, ""
        return self.local, "no upstream configured"

    def get(self, model: str) -> Embedder | None:
        """The embedder of ``model``, the name stored with vectors: a local model, or a model
        of the endpoint likely to serve it; None when no endpoint is configured."""
        if model in self._local:
            return self._local[model]
        if model not in self._remote:
            # The embeddings endpoint serves its configured model; a store made with the
            # upstream's model before keeps asking the upstream.
            source = self.endpoint if self.endpoint is not None and (
                model == self.settings.embeddings_model or self.upstream is None) \
                else self.upstream
            if source is None:
                return None
            self._remote[model] = RemoteEmbedder(source, model,
                                                 self.settings.embeddings_batch_size)
        return self._remote[model]

    def searchable(self) -> frozenset[str] | None:
        """The models whose vectors can be searched: the local ones, or any (None) when an
        endpoint may serve them."""
        if self.endpoint is not None or self.upstream is not None:
            return None
        return frozenset(self._local)

    def start(self) -> None:
        """In a process that ingests: decide the model of new stores in the background."""
        if self._for_new is None:
            self._task = asyncio.create_task(self._decide(), name="vtai-embeddings-model")
        else:
            self._settle(self._for_new, self._why)

    async def for_new_store(self) -> Embedder:
        """The model a store gets with its first file; while the upstream is being asked (at
        start), that answer is waited for."""
        if self._for_new is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._decided.wait(), DECIDE_SECONDS)
        return self._for_new or self.local

    async def _decide(self) -> None:
        assert self.upstream is not None
        try:
            model = await asyncio.wait_for(self.upstream.embedding_model(), DECIDE_SECONDS)
            found = self.get(model)
            assert found is not None
            self._settle(found, f"served by the upstream {self.upstream.base_url}")
        except TimeoutError:
            self._settle(self.local, f"the upstream {self.upstream.base_url} did not say in "
                                     f"{DECIDE_SECONDS:.0f} s which models it serves")
        except Exception as err:  # whatever the upstream answers, new stores get a model
            self._settle(self.local, f"no embeddings model from the upstream: {err}")

    def _settle(self, chosen: Embedder, why: str) -> None:
        self._for_new = chosen
        self._decided.set()
        log.info("new vector stores embed with %s (%s)", chosen.model, why)
        if chosen is self.static and not self.static.ready:
            self.static.prepare_in_background()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for endpoint in (self.endpoint, self.upstream):
            if endpoint is not None:
                await endpoint.close()
