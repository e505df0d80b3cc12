"""File bytes in the blob store of each database: files under the data dir on SQLite, rows of
``blob_chunks`` on PostgreSQL. Bytes go in and come out a chunk at a time, whatever they
came from, and a file is never held whole in memory."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from vtai.server import ids
from vtai.server.store import blobs, tables
from vtai.server.store.blobs import CHUNK, DiskBlobs, TooLarge
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore
from vtai.server.store.pgblobs import PostgresBlobs
from vtai.server.store.sql import Connection

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[FileStore]:
    db = Database(store_url)
    await db.migrate()
    yield FileStore.at(db, tmp_path / "data")
    await db.close()


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def sources(data: bytes) -> Iterator[tuple[str, blobs.Source]]:
    yield "bytes", data
    yield "file", io.BytesIO(data)
    yield "small pieces", pieces(data, 100_003)
    yield "large pieces", pieces(data, CHUNK + CHUNK // 2)


def expected_chunks(size: int) -> list[int]:
    """The sizes of the chunks a blob of ``size`` bytes is read in."""
    return [min(CHUNK, size - start) for start in range(0, size, CHUNK)]


async def chunk_sizes(store: FileStore, blob_id: str) -> list[int]:
    return [len(chunk) async for chunk in await store.open(blob_id)]


async def _row_sizes(db: Database, blob_id: str) -> list[int]:
    c = tables.blob_chunks
    async with db.read() as conn:
        rows = (await conn.execute(select(func.length(c.c.data)).where(
            c.c.blob_id == blob_id).order_by(c.c.seq))).scalars().all()
    return list(rows)


async def _nothing(_conn: Connection, size: int) -> int:
    return size


async def test_bytes_come_back_in_chunks_whatever_they_came_from(store: FileStore) -> None:
    for size in SIZES:
        data = os.urandom(size)
        for how, source in sources(data):
            blob_id = ids.new_id("file-")
            assert await store.blobs.save(blob_id, source) == size, how
            assert await chunk_sizes(store, blob_id) == expected_chunks(size), (how, size)
            assert await store.read(blob_id) == data, (how, size)
            async with store.local_path(blob_id) as path:
                assert path.read_bytes() == data
            if isinstance(store.blobs, PostgresBlobs):
                # One row per chunk; an empty blob is one empty row, so that it exists.
                assert await _row_sizes(store.db, blob_id) == (expected_chunks(size) or [0])


async def test_a_missing_blob_is_not_found(store: FileStore) -> None:
    with pytest.raises(FileNotFoundError):
        await store.open("file-missing")
    with pytest.raises(FileNotFoundError):
        await store.read("file-missing")
    with pytest.raises(FileNotFoundError):
        async with store.local_path("file-missing"):
            pass
    await store.delete_bytes("file-missing")  # no error


async def test_deleted_bytes_are_gone(store: FileStore) -> None:
    obj = await store.create_from_bytes("proj", "a.bin", "assistants", os.urandom(CHUNK + 1))
    await store.delete_bytes(obj["id"])
    with pytest.raises(FileNotFoundError):
        await store.read(obj["id"])
    if isinstance(store.blobs, PostgresBlobs):
        assert await _row_sizes(store.db, obj["id"]) == []


async def test_too_large_keeps_nothing(store: FileStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 10)
    for (_, source), (_, again) in zip(sources(data), sources(data), strict=True):
        with pytest.raises(TooLarge):
            await store.create("proj", "big.bin", "assistants", source, 2 * CHUNK)
        with pytest.raises(TooLarge):
            await store.blobs.save(ids.new_id("file-"), again, CHUNK + 1)
    async with store.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(tables.files))).scalar() == 0
        assert (await conn.execute(select(func.count()).select_from(
            tables.blob_chunks))).scalar() == 0
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


async def test_bytes_and_their_file_are_kept_together_or_not_at_all(store: FileStore) -> None:
    async def refused(_conn: Connection, _size: int) -> None:
        raise RuntimeError("the record could not be stored")

    blob_id = ids.new_id("file-")
    with pytest.raises(RuntimeError):
        await store.blobs.save_and_record(blob_id, os.urandom(CHUNK * 2), None, store.db,
                                          refused)
    with pytest.raises(FileNotFoundError):
        await store.read(blob_id)
    size = await store.blobs.save_and_record(blob_id, b"kept", None, store.db, _nothing)
    assert size == 4 and await store.read(blob_id) == b"kept"


async def _counted(size: int, piece: int) -> AsyncIterator[bytes]:
    """``size`` bytes made as they are asked for (never all at once)."""
    for start in range(0, size, piece):
        yield hashlib.sha256(start.to_bytes(8, "big")).digest() * (piece // 32)


async def test_large_files_go_in_and_out_in_bounded_memory(store: FileStore) -> None:
    size, piece = 48 * CHUNK, 64 * 1024
    tracemalloc.start()
    try:
        blob_id = ids.new_id("file-")
        assert await store.blobs.save(blob_id, _counted(size, piece)) == size
        _, saving = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest, sizes = hashlib.sha256(), []
        async for chunk in await store.open(blob_id):
            digest.update(chunk)
            sizes.append(len(chunk))
        _, reading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256()
    async for part in _counted(size, piece):
        expected.update(part)
    assert digest.hexdigest() == expected.hexdigest()
    assert sizes == [CHUNK] * 48
    # A few chunks at most were held at any time, never the whole file (48 chunks).
    assert saving < 8 * CHUNK, saving
    assert reading < 8 * CHUNK, reading


async def test_bytes_on_disk_from_before_move_into_postgres(store: FileStore,
                                                            tmp_path: Path) -> None:
    """A PostgreSQL deployment from before 0009 kept bytes under each host's data dir: they
    are read from there until they are moved into the database, each once, and removed."""
    if not isinstance(store.blobs, PostgresBlobs):
        assert (await store.move_disk_bytes()).files == 0
        return
    legacy = DiskBlobs(tmp_path / "data" / "files")  # as the server before kept them
    data = os.urandom(2 * CHUNK + 3)
    owned = ids.new_id("file-")
    await legacy.save(owned, data)
    async with store.db.write() as conn:
        await conn.execute(tables.files.insert().values(
            id=owned, project_id="proj", created_at=ids.now(), purpose="assistants",
            data=f'{{"id": "{owned}"}}'))
    orphan = ids.new_id("file-")
    await legacy.save(orphan, b"no file names this")
    assert await store.read(owned) == data  # from the disk, not moved yet
    elsewhere = FileStore.at(store.db, tmp_path / "other-host")
    with pytest.raises(FileNotFoundError):
        await elsewhere.read(owned)

    moved = await store.move_disk_bytes()
    assert (moved.files, moved.bytes, moved.unowned) == (1, len(data), 1)
    assert not legacy.path(owned).exists() and legacy.path(orphan).exists()
    assert await elsewhere.read(owned) == data
    assert await _row_sizes(store.db, owned) == [CHUNK, CHUNK, 3]
    again = await store.move_disk_bytes()
    assert (again.files, again.unowned) == (0, 1)
    async with store.db.read() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM blob_chunks"))).scalar()
    assert count == 3
