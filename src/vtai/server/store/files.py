"""Files: their objects (the ``files`` table) and their bytes (the blob store: under the data
dir on SQLite, in the database on PostgreSQL), kept in one place for every part of the server
that makes or reads one: the files API, the code interpreter's outputs and inputs, image parts
of prompts, vector store ingestion."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from openai.types import FileObject
from sqlalchemy import ColumnElement, or_

from vtai.server import ids
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.blobs import Blobs, DiskBlobs, Moved, Source
from vtai.server.store.db import Database
from vtai.server.store.pgblobs import PostgresBlobs
from vtai.server.store.sql import Connection, Sql

log = logging.getLogger("vtai.store")

# The file's row, locked until the transaction ends: a delete waits for bytes being moved.
_FILE_LOCKED = Sql("SELECT id FROM files WHERE id = :id FOR UPDATE")


def file_object(file_id: str, filename: str, size: int, purpose: str,
                expires_at: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": file_id, "object": "file", "bytes": size, "created_at": ids.now(),
        "filename": filename, "purpose": purpose, "status": "processed",
    }
    if expires_at is not None:  # absent, not null, when the file never expires
        obj["expires_at"] = expires_at
    return shaped(FileObject, obj)


def live(now: int | None = None) -> ColumnElement[bool]:
    """Files that have not expired."""
    f = tables.files
    return or_(f.c.expires_at.is_(None), f.c.expires_at > (now or ids.now()))


def blob_store(db: Database, data_dir: Path) -> Blobs:
    """Where file bytes go: the database when it is PostgreSQL (hosts then share nothing
    else), else files under the data dir."""
    disk = DiskBlobs(data_dir / "files")
    if db.is_sqlite:
        return disk
    return PostgresBlobs(db, disk, data_dir / "tmp")


class FileStore:
    def __init__(self, db: Database, blobs: Blobs) -> None:
        self.db = db
        self.blobs = blobs
        self._moving: asyncio.Task[Moved] | None = None

    @classmethod
    def at(cls, db: Database, data_dir: Path) -> FileStore:
        """Files of ``db``, their bytes where ``blob_store`` puts them."""
        return cls(db, blob_store(db, data_dir))

    async def create(self, project: str, filename: str, purpose: str, source: Source,
                     limit: int, expires_at: int | None = None) -> str:
        """A new file from ``source`` (a file, bytes or an async iterator of them: at most
        ``limit`` bytes, blobs.TooLarge otherwise): its object's JSON."""
        file_id = ids.new_id("file-")

        async def record(conn: Connection, size: int) -> str:
            obj = file_object(file_id, filename, size, purpose, expires_at)
            return await objects.insert_object(conn, tables.files, obj, project,
                                               purpose=purpose, expires_at=expires_at)

        return await self.blobs.save_and_record(file_id, source, limit, self.db, record)

    async def create_from_bytes(self, project: str, filename: str, purpose: str,
                                data: bytes) -> dict[str, Any]:
        """A new file of bytes the server made (a code interpreter's output, for instance)."""
        file_id = ids.new_id("file-")
        obj = file_object(file_id, filename, len(data), purpose)

        async def record(conn: Connection, _size: int) -> None:
            await objects.insert_object(conn, tables.files, obj, project, purpose=purpose)

        await self.blobs.save_and_record(file_id, data, None, self.db, record)
        return obj

    @staticmethod
    async def get(conn: Connection, file_id: str, project: str) -> dict[str, Any] | None:
        """A file of this project that has not expired."""
        return await objects.get_object(conn, tables.files, file_id, project, live())

    async def open(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time as they are consumed (FileNotFoundError at
        once if there are none)."""
        return await self.blobs.open(file_id)

    async def read(self, file_id: str) -> bytes:
        """The file's bytes, whole (FileNotFoundError if there are none)."""
        return await self.blobs.read(file_id)

    def local_path(self, file_id: str) -> AbstractAsyncContextManager[Path]:
        """A path on this host holding the file's bytes while the context lasts, to copy
        from (FileNotFoundError if there are none)."""
        return self.blobs.local_path(file_id)

    async def delete_bytes(self, file_id: str) -> None:
        await self.blobs.delete(file_id)

    async def move_disk_bytes(self) -> Moved:
        """Bytes that servers before file bytes were kept in PostgreSQL left under this
        host's data dir, moved into the database (nothing to do on SQLite)."""
        moved = await self.blobs.take_in_disk_bytes(_wanted)
        if moved.files:
            log.info("moved the bytes of %d files (%d bytes) from this host's data dir into "
                     "the database", moved.files, moved.bytes)
        if moved.unowned:
            log.warning("%d blobs in this host's data dir belong to no file: left there",
                        moved.unowned)
        return moved

    def start(self) -> None:
        """``move_disk_bytes`` in the background: a server serves meanwhile, reading bytes
        not moved yet from the disk."""
        self._moving = asyncio.create_task(self._move(), name="vtai-move-file-bytes")

    async def _move(self) -> Moved:
        try:
            return await self.move_disk_bytes()
        except Exception:
            log.exception("moving file bytes into the database failed; the next start "
                          "tries again")
            raise

    async def stop(self) -> None:
        if self._moving is not None:
            self._moving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._moving


async def _wanted(conn: Connection, file_id: str) -> bool:
    return bool((await conn.sql(_FILE_LOCKED, {"id": file_id})).rows)
