"""Ingestion: files attached to vector stores become chunks with embeddings, in the
background of the processes that execute runs.

The database is the queue: a file in progress is claimed with a lease, renewed while it is
processed, so files left in progress by a process that stopped are taken up again (at once
on SQLite, where one process owns the database; when their lease runs out on PostgreSQL,
where several may share it). Parsing, tokenizing and embedding run in a worker thread, so
the event loop keeps serving. A file that cannot be read fails with ``last_error`` and the
others go on.

A file is embedded by the model of its store's chunks, or, for the store's first file, by
the model new stores get (``embedders.py``): a store never mixes models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import insert, select, update

from vtai.server import ids
from vtai.server.retrieval import stores
from vtai.server.retrieval.chunking import Chunk, Strategy, chunk
from vtai.server.retrieval.embedders import Embedders
from vtai.server.retrieval.embeddings import Embedder, EmbeddingUnavailable
from vtai.server.retrieval.extraction import ExtractionError, extract_text
from vtai.server.retrieval.modelfiles import ModelFileError
from vtai.server.retrieval.tokens import Tokens, tokenize
from vtai.server.store import tables
from vtai.server.store.db import Database, Listener
from vtai.server.store.files import FileStore

log = logging.getLogger("vtai.file_search")

POLL_SECONDS = 2.0
EXPIRY_SWEEP_SECONDS = 60.0
MAX_ATTEMPTS = 3  # a file whose process died this often while on it fails
MAX_MODEL_RACES = 3  # times a file is embedded again for a store given another model meanwhile
INSERT_ROWS = 500  # chunk rows per INSERT

vsf, vs, chunk_table = tables.vector_store_files, tables.vector_stores, tables.vector_store_chunks


@dataclass
class _Parsed:
    tokens: Tokens
    chunks: list[Chunk]


def _parse(filename: str, data: bytes, strategy: Strategy, max_tokens: int) -> _Parsed:
    text = extract_text(filename, data)
    tokens = tokenize(text)
    if len(tokens) > max_tokens:
        raise ExtractionError("invalid_file", f"The file has {len(tokens)} tokens; the limit "
                                              f"is {max_tokens}.")
    return _Parsed(tokens, chunk(text, tokens, strategy))


class Ingestor:
    def __init__(self, db: Database, files: FileStore, embedders: Embedders,
                 lease_seconds: int, max_file_tokens: int) -> None:
        self.db = db
        self.files = files
        self.embedders = embedders
        self.lease_seconds = lease_seconds
        self.max_file_tokens = max_file_tokens
        self.id = f"ingest_{secrets.token_hex(6)}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vtai-ingest")
        self._last_sweep = 0.0

    async def start(self) -> None:
        if self.db.is_sqlite:
            # Only this process uses the database: what is leased was left by a process
            # that stopped.
            async with self.db.write() as conn:
                await conn.execute(update(vsf).where(vsf.c.status == stores.IN_PROGRESS)
                                   .values(worker_id=None, lease_expires_at=None))
        else:
            self._listener = await self.db.listen(
                {stores.WORK_CHANNEL: lambda _payload: self.wake()})
        self._task = asyncio.create_task(self._loop(), name="vtai-file-search-ingest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                if time.monotonic() - self._last_sweep > EXPIRY_SWEEP_SECONDS:
                    self._last_sweep = time.monotonic()
                    await self.expire_stores()
                claimed = await self._claim()
                if claimed is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                    continue
                await self._ingest(*claimed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingestion loop error; retrying")
                await asyncio.sleep(POLL_SECONDS)

    async def _claim(self) -> tuple[dict[str, Any], int] | None:
        now = ids.now()
        async with self.db.write() as conn:
            row = (await conn.execute(select(vsf.c.vector_store_id, vsf.c.id, vsf.c.data,
                                             vsf.c.attempt).where(stores.claimable(now))
                                      .order_by(vsf.c.created_at).limit(1)
                                      .with_for_update(skip_locked=True))).first()
            if row is None:
                return None
            await conn.execute(update(vsf).where(
                vsf.c.vector_store_id == row.vector_store_id, vsf.c.id == row.id).values(
                worker_id=self.id, lease_expires_at=now + self.lease_seconds,
                attempt=row.attempt + 1))
        return orjson.loads(row.data), int(row.attempt) + 1

    async def _renew(self, obj: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            async with self.db.write() as conn:
                await conn.execute(update(vsf).where(
                    vsf.c.vector_store_id == obj["vector_store_id"], vsf.c.id == obj["id"],
                    vsf.c.worker_id == self.id).values(
                    lease_expires_at=ids.now() + self.lease_seconds))

    async def _ingest(self, obj: dict[str, Any], attempt: int) -> None:
        started = time.monotonic()
        if attempt > MAX_ATTEMPTS:
            await self._finish(obj, None, None, {
                "code": "server_error", "message": f"Processing the file stopped {MAX_ATTEMPTS} "
                                                   "times; it was not tried again."})
            return
        renewal = asyncio.create_task(self._renew(obj))
        try:
            await self._index(obj)
        except ExtractionError as err:
            await self._finish(obj, None, None, {"code": err.code, "message": err.message})
        except FileNotFoundError:
            await self._finish(obj, None, None, {"code": "invalid_file",
                                                 "message": "The file no longer exists."})
        except (EmbeddingUnavailable, ModelFileError) as err:  # the message says it all
            log.error("ingesting %s into %s failed: %s", obj["id"], obj["vector_store_id"], err)
            await self._finish(obj, None, None, {"code": "server_error", "message": str(err)})
        except Exception as err:  # a file must end, whatever went wrong
            log.exception("ingesting %s into %s failed", obj["id"], obj["vector_store_id"])
            await self._finish(obj, None, None, {"code": "server_error",
                                                 "message": f"Processing failed: {err}"})
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
        log.info("file %s in %s ingested in %.2fs", obj["id"], obj["vector_store_id"],
                 time.monotonic() - started)

    async def _index(self, obj: dict[str, Any]) -> None:
        """Chunks and vectors of the file, by its store's model, stored. When another process
        gives the store its first file at the same time, by another model, the file that
        comes second is embedded again by the model of the first."""
        parsed: _Parsed | None = None
        for _ in range(MAX_MODEL_RACES):
            embedder = await self._embedder(obj)
            copied = await self._copy_from_other_store(obj, embedder.model)
            if copied:
                stored = await self._finish(obj, None, None, None, copied, embedder.model)
            else:
                parsed = parsed or await self._parse(obj)
                vectors = await embedder.embed_chunks(parsed.tokens, parsed.chunks)
                stored = await self._finish(obj, parsed, vectors, None, model=embedder.model)
            if stored:
                return
        raise RuntimeError("the vector store's embedding model kept changing")

    async def _embedder(self, obj: dict[str, Any]) -> Embedder:
        """The model of the store's other files, or the one new stores get."""
        async with self.db.read() as conn:
            model = await stores.store_model(conn, obj["vector_store_id"], obj["id"])
        if model is None:
            return await self.embedders.for_new_store()
        embedder = self.embedders.get(model)
        if embedder is None:
            raise EmbeddingUnavailable(
                f"The files of this vector store are embedded by '{model}', which no "
                "configured endpoint serves: set VTAI_EMBEDDINGS_BASE_URL or "
                "VTAI_UPSTREAM_BASE_URL to one that does, or add the file to a new vector "
                "store.")
        return embedder

    async def _parse(self, obj: dict[str, Any]) -> _Parsed:
        async with self.db.read() as conn:
            file_data = (await conn.execute(select(tables.files.c.data).where(
                tables.files.c.id == obj["id"]))).scalar()
        if file_data is None:
            raise FileNotFoundError(obj["id"])
        filename = orjson.loads(file_data)["filename"]
        data = await self.files.read(obj["id"])
        strategy = Strategy.from_object(obj["chunking_strategy"])
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _parse, filename, data, strategy,
                                          self.max_file_tokens)

    async def _copy_from_other_store(self, obj: dict[str, Any], model: str
                                     ) -> list[Any] | None:
        """The chunks of the same file with the same chunking and model, if another store of
        the project has them: the thread stores made from attachments often repeat files."""
        c = chunk_table
        async with self.db.read() as conn:
            others = (await conn.execute(select(vsf.c.vector_store_id, vsf.c.data).where(
                vsf.c.id == obj["id"], vsf.c.status == stores.COMPLETED,
                vsf.c.vector_store_id != obj["vector_store_id"]))).all()
            for other in others:
                if orjson.loads(other.data)["chunking_strategy"] != obj["chunking_strategy"]:
                    continue
                rows = (await conn.execute(select(
                    c.c.position, c.c.start_char, c.c.text, c.c.tokens, c.c.model,
                    c.c.embedding).where(c.c.vector_store_id == other.vector_store_id,
                                         c.c.file_id == obj["id"],
                                         c.c.model == model)
                    .order_by(c.c.position))).all()
                if rows:
                    return list(rows)
        return None

    async def _finish(self, obj: dict[str, Any], parsed: _Parsed | None,
                      vectors: np.ndarray | None, error: dict[str, str] | None,
                      copied: list[Any] | None = None, model: str = "") -> bool:
        """Store the outcome, unless the file left the store or stopped being in progress
        (deleted, cancelled) or another worker took it over meanwhile. False, and nothing
        stored, when the store holds chunks of a model other than ``model`` (theirs)."""
        rows = self._rows(obj, parsed, vectors, model) \
            if parsed is not None and vectors is not None \
            else [dict(row._mapping, vector_store_id=obj["vector_store_id"], file_id=obj["id"])
                  for row in copied or []]
        async with self.db.write() as conn:
            store = await stores.lock_store(conn, obj["vector_store_id"])
            current = (await conn.execute(select(vsf.c.data, vsf.c.worker_id, vsf.c.batch_id)
                                          .where(vsf.c.vector_store_id == obj["vector_store_id"],
                                                 vsf.c.id == obj["id"]))).first()
            if store is None or current is None or current.worker_id != self.id:
                return True
            latest = orjson.loads(current.data)
            if latest["status"] != stores.IN_PROGRESS:
                return True
            if rows and await stores.store_model(conn, obj["vector_store_id"],
                                                 obj["id"]) not in (None, model):
                return False
            await conn.execute(chunk_table.delete().where(
                chunk_table.c.vector_store_id == obj["vector_store_id"],
                chunk_table.c.file_id == obj["id"]))
            for begin in range(0, len(rows), INSERT_ROWS):
                await conn.execute(insert(chunk_table), rows[begin:begin + INSERT_ROWS])
            latest["status"] = stores.FAILED if error else stores.COMPLETED
            latest["last_error"] = error
            previous = int(latest.get("usage_bytes") or 0)
            latest["usage_bytes"] = sum(len(r["text"].encode()) + len(r["embedding"])
                                        for r in rows)
            await stores.save_file(conn, latest, worker_id=None, lease_expires_at=None)
            if rows:
                await stores.bump_index(conn, obj["vector_store_id"])
            await stores.recount_store(conn, store, latest["usage_bytes"] - previous)
            if current.batch_id is not None:
                await stores.recount_batch(conn, current.batch_id)
        return True

    def _rows(self, obj: dict[str, Any], parsed: _Parsed, vectors: np.ndarray, model: str
              ) -> list[dict[str, Any]]:
        return [{"vector_store_id": obj["vector_store_id"], "file_id": obj["id"],
                 "position": c.position, "start_char": c.start_char, "text": c.text,
                 "tokens": c.tokens, "model": model,
                 "embedding": vectors[i].astype(np.float32).tobytes()}
                for i, c in enumerate(parsed.chunks)]

    async def expire_stores(self) -> None:
        """Stores idle past their expiry: expired, and their chunks dropped."""
        now = ids.now()
        async with self.db.read() as conn:
            due = (await conn.execute(select(vs.c.id).where(
                vs.c.expires_at.is_not(None), vs.c.expires_at <= now))).scalars().all()
        for store_id in due:
            async with self.db.write() as conn:
                store = await stores.lock_store(conn, store_id)
                if store is None or store["status"] == "expired":
                    continue
                store["status"] = "expired"
                await stores.remove_chunks(conn, store_id)
                await stores.recount_store(conn, store, -int(store.get("usage_bytes") or 0))
            log.info("vector store %s expired", store_id)

