"""Files: their objects (the ``files`` table) and their bytes (the blob store), kept in one
place for every part of the server that makes or reads one: the files API, the code
interpreter's outputs and inputs, image parts of prompts, vector store ingestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from openai.types import FileObject
from sqlalchemy import ColumnElement, or_

from vtai.server import ids
from vtai.server.shapes import shaped
from vtai.server.store import objects, tables
from vtai.server.store.blobs import BlobStore
from vtai.server.store.db import Database
from vtai.server.store.sql import Connection


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


class FileStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    async def create(self, project: str, filename: str, purpose: str, source: BinaryIO,
                     limit: int, expires_at: int | None = None) -> str:
        """A new file from ``source`` (at most ``limit`` bytes: blobs.TooLarge otherwise):
        its object's JSON."""
        file_id = ids.new_id("file-")
        size = await self.blobs.save(file_id, source, limit)
        obj = file_object(file_id, filename, size, purpose, expires_at)
        try:
            async with self.db.write() as conn:
                return await objects.insert_object(conn, tables.files, obj, project,
                                                   purpose=purpose, expires_at=expires_at)
        except BaseException:
            await self.blobs.delete(file_id)
            raise

    async def create_from_bytes(self, project: str, filename: str, purpose: str,
                                data: bytes) -> dict[str, Any]:
        """A new file of bytes the server made (a code interpreter's output, for instance)."""
        file_id = ids.new_id("file-")
        size = await self.blobs.save_bytes(file_id, data)
        obj = file_object(file_id, filename, size, purpose)
        async with self.db.write() as conn:
            await objects.insert_object(conn, tables.files, obj, project, purpose=purpose)
        return obj

    @staticmethod
    async def get(conn: Connection, file_id: str, project: str) -> dict[str, Any] | None:
        """A file of this project that has not expired."""
        return await objects.get_object(conn, tables.files, file_id, project, live())

    async def read(self, file_id: str) -> bytes:
        return await self.blobs.read(file_id)

    def path(self, file_id: str) -> Path:
        return self.blobs.path(file_id)

    async def delete_bytes(self, file_id: str) -> None:
        await self.blobs.delete(file_id)
