"""Vector stores idle past their expiry: expired, their chunks gone, no longer searched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select

from vtai.server import ids
from vtai.server.retrieval import stores
from vtai.server.retrieval.embeddings import LOCAL_MODEL
from vtai.server.retrieval.ingest import Ingestor
from vtai.server.store import objects, tables
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database


class _NoEmbeddings:
    model = LOCAL_MODEL


async def test_idle_stores_expire(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'vtai.db'}")
    await db.migrate()
    kept = stores.new_store("kept", {}, {"anchor": "last_active_at", "days": 3})
    idle = stores.new_store("idle", {}, {"anchor": "last_active_at", "days": 1})
    async with db.write() as conn:
        for store in (kept, idle):
            await stores.insert_store(conn, "proj", store)
            await conn.execute(insert(tables.vector_store_chunks).values(
                vector_store_id=store["id"], file_id="file-x", position=0, start_char=0,
                text="some text", tokens=2, model=LOCAL_MODEL,
                embedding=np.ones(384, dtype=np.float32).tobytes()))
        idle["expires_at"] = ids.now() - 1
        await objects.save_object(conn, tables.vector_stores, idle,
                                  expires_at=idle["expires_at"])
    assert not stores.is_expired(kept) and stores.is_expired(idle)

    ingestor = Ingestor(db, BlobStore(tmp_path), _NoEmbeddings(), 30,  # type: ignore[arg-type]
                        1000)
    await ingestor.expire_stores()
    async with db.read() as conn:
        gone = await objects.get_object(conn, tables.vector_stores, idle["id"], "proj")
        still = await objects.get_object(conn, tables.vector_stores, kept["id"], "proj")
        left = dict((await conn.execute(select(
            tables.vector_store_chunks.c.vector_store_id, func.count()).group_by(
            tables.vector_store_chunks.c.vector_store_id))).all())
        swept = (await conn.execute(select(tables.vector_stores.c.expires_at).where(
            tables.vector_stores.c.id == idle["id"]))).scalar()
    assert gone is not None and gone["status"] == "expired" and gone["usage_bytes"] == 0
    assert still is not None and still["status"] == "completed"
    assert left == {kept["id"]: 1}
    assert swept is None  # the sweep does not look at it again
    await db.close()
