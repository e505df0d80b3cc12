"""SQLite's WAL checkpoints run in a thread of their own, not in a commit in the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from vtai.server.store import sqlite as store_sqlite
from vtai.server.store.db import Database
from vtai.server.store.sql import Sql

_ROW = "x" * 4000  # a page or more per transaction


async def _write(db: Database, rows: int) -> None:
    """``rows`` write transactions of one row each, a checkpoint waited for when one runs."""
    for _ in range(rows):
        async with db.write() as conn:
            await conn.sql(Sql("INSERT INTO t (data) VALUES (:data)"), {"data": _ROW})
        running = db.sqlite.checkpointing  # type: ignore[union-attr]
        if running is not None and not running.done():
            await running


async def test_the_writer_leaves_checkpoints_to_a_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/vtai.db")
    try:
        async with db.write() as conn:
            await conn.sql(Sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)"))
            raw = conn._raw  # type: ignore[attr-defined]
            assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        wal = tmp_path / "vtai.db-wal"
        await _write(db, store_sqlite.CHECKPOINT_EVERY - 2)  # with CREATE TABLE: one short
        assert db.checkpoints == 0
        before = wal.stat().st_size  # the WAL of CHECKPOINT_EVERY transactions
        await _write(db, 3 * store_sqlite.CHECKPOINT_EVERY + 1)
        assert db.checkpoints == 4
        # After each checkpoint the WAL started over, so it never held much more than
        # CHECKPOINT_EVERY transactions (without checkpoints it would hold all of them).
        assert wal.stat().st_size < 1.5 * before
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "vtai.db") as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == \
            4 * store_sqlite.CHECKPOINT_EVERY - 1


async def test_writes_go_on_while_a_checkpoint_runs(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/vtai.db")
    try:
        async with db.write() as conn:
            await conn.sql(Sql("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)"))
        for _ in range(store_sqlite.CHECKPOINT_EVERY - 1):  # with CREATE TABLE: the count
            async with db.write() as conn:
                await conn.sql(Sql("INSERT INTO t (data) VALUES (:data)"), {"data": _ROW})
        running = db.sqlite.checkpointing  # type: ignore[union-attr]
        assert running is not None  # started by the last commit, not waited for
        async with db.write() as conn:  # meanwhile
            await conn.sql(Sql("INSERT INTO t (data) VALUES (:data)"), {"data": _ROW})
        await asyncio.wait([running])
        assert db.checkpoints == 1
        async with db.read() as conn:
            count = (await conn.sql(Sql("SELECT count(*) FROM t"))).scalar()
        assert count == store_sqlite.CHECKPOINT_EVERY
    finally:
        await db.close()
