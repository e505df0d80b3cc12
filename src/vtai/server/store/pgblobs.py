"""File bytes in PostgreSQL, so that servers on any number of hosts share them through the
database alone: each blob is rows of ``blob_chunks`` ``(blob_id, seq, data)`` of ``CHUNK``
bytes (the last one shorter; an empty blob is one empty row, so that it exists).

A blob is written a chunk per statement in one transaction, which also stores what the
bytes belong to (``save_and_record``): bytes never commit without their file object, nor the
reverse, and an upload cut short leaves nothing behind. It is read a chunk per query, each
on a connection held only for that query: a slow download holds no connection and no
transaction.

Bytes that servers before migration 0009 kept under this host's data dir are moved in when
a server starts (``take_in_disk_bytes``); until then they are read from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vtai.server.store.blobs import (
    Blobs,
    DiskBlobs,
    Moved,
    Record,
    Source,
    T,
    Wanted,
    check_id,
    chunks,
)
from vtai.server.store.sql import Connection, Sql

if TYPE_CHECKING:
    from vtai.server.store.db import Database

_INSERT = Sql("INSERT INTO blob_chunks (blob_id, seq, data) VALUES (:blob_id, :seq, :data)")
_CHUNK_AT = Sql("SELECT data FROM blob_chunks WHERE blob_id = :blob_id AND seq = :seq")
_DELETE = Sql("DELETE FROM blob_chunks WHERE blob_id = :blob_id")


async def _size(_conn: Connection, size: int) -> int:
    return size


class PostgresBlobs(Blobs):
    def __init__(self, db: Database, disk: DiskBlobs, scratch: Path) -> None:
        self.db = db
        self.disk = disk  # where servers before this one kept bytes, on this host
        self.scratch = scratch  # for local copies (local_path)

    async def save(self, blob_id: str, source: Source, limit: int | None = None) -> int:
        return await self.save_and_record(blob_id, source, limit, self.db, _size)

    async def save_and_record(self, blob_id: str, source: Source, limit: int | None,
                              db: Database, record: Record[T]) -> T:
        async with self.db.write() as conn:
            size = await self.write(conn, blob_id, source, limit)
            return await record(conn, size)

    @staticmethod
    async def write(conn: Connection, blob_id: str, source: Source,
                    limit: int | None = None) -> int:
        """The blob's rows, written in ``conn``'s transaction; returns its size."""
        check_id(blob_id)
        seq = size = 0
        async for chunk in chunks(source, limit):
            await conn.sql(_INSERT, {"blob_id": blob_id, "seq": seq, "data": chunk})
            seq += 1
            size += len(chunk)
        if seq == 0:
            await conn.sql(_INSERT, {"blob_id": blob_id, "seq": 0, "data": b""})
        return size

    async def _chunk(self, blob_id: str, seq: int) -> bytes | None:
        async with self.db.read() as conn:
            data = (await conn.sql(_CHUNK_AT, {"blob_id": blob_id, "seq": seq})).scalar()
        return None if data is None else bytes(data)

    async def _chunks(self, blob_id: str) -> AsyncGenerator[bytes, None]:
        chunk = await self._chunk(blob_id, 0)
        if chunk is None:  # not moved in from this host's disk yet, or no such blob
            try:
                on_disk = await self.disk.open(blob_id)
            except FileNotFoundError:
                chunk = await self._chunk(blob_id, 0)  # moved in meanwhile
                if chunk is None:
                    raise
            else:
                async with aclosing(on_disk):  # type: ignore[type-var]
                    async for piece in on_disk:
                        yield piece
                return
        seq = 0
        while chunk is not None:
            if chunk:
                yield chunk
            seq += 1
            chunk = await self._chunk(blob_id, seq)

    @asynccontextmanager
    async def local_path(self, blob_id: str) -> AsyncIterator[Path]:
        """A copy in the scratch directory, removed when the context ends."""
        stream = await self.open(blob_id)
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{blob_id}.", dir=self.scratch)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                async with aclosing(stream):  # type: ignore[type-var]
                    async for chunk in stream:
                        await asyncio.to_thread(out.write, chunk)
            yield path
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def delete(self, blob_id: str) -> None:
        async with self.db.write() as conn:
            await conn.sql(_DELETE, {"blob_id": check_id(blob_id)})
        await self.disk.delete(blob_id)

    async def take_in_disk_bytes(self, wanted: Wanted) -> Moved:
        """Each blob under this host's data dir that a file still names, moved into the
        database in a transaction of its own (with the file's row locked by ``wanted``, so
        that a delete waits for it), then removed from the disk. Blobs no file names are
        left where they are. Safe to run in several processes at once, and again after
        being stopped at any point."""
        moved = Moved()
        for path in await asyncio.to_thread(self.disk.stored):
            blob_id = path.name
            async with self.db.write() as conn:
                if not await wanted(conn, blob_id):
                    moved.unowned += 1
                    continue
                if (await conn.sql(_CHUNK_AT, {"blob_id": blob_id, "seq": 0})).rows:
                    pass  # moved by another process, or before a stop that left it here
                else:
                    try:
                        source = await asyncio.to_thread(path.open, "rb")
                    except FileNotFoundError:
                        continue  # moved by another process meanwhile
                    with source:
                        moved.bytes += await self.write(conn, blob_id, source)
                    moved.files += 1
            await asyncio.to_thread(_remove, path)
        return moved


def _remove(path: Path) -> None:
    """A file, and its directory if that is left empty."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()
