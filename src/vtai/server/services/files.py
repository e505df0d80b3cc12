"""/v1/files: upload, list, retrieve, delete, content."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from vtai.server import ids
from vtai.server.errors import TooLarge, bad_request, not_found
from vtai.server.protocol.lists import ListParams
from vtai.server.retrieval.stores import remove_file_everywhere
from vtai.server.settings import Settings
from vtai.server.store import blobs, objects, tables
from vtai.server.store.files import FileStore, live
from vtai.server.store.objects import Page

MAX_FILENAME_CHARS = 1024


def _check_filename(name: str | None) -> str:
    # Stored and returned as given, never used as a path on disk.
    if not name:
        raise bad_request("The uploaded file must have a filename.", "file")
    if "\x00" in name or len(name) > MAX_FILENAME_CHARS:
        raise bad_request(f"Invalid filename: it must be at most {MAX_FILENAME_CHARS} "
                          "characters, without NUL bytes.", "file")
    return name


@dataclass
class Content:
    """A file's bytes as they are read, a chunk at a time, with their size and type."""

    chunks: AsyncIterator[bytes]
    size: int
    media_type: str


class Files:
    def __init__(self, files: FileStore, settings: Settings) -> None:
        self.files = files
        self.db = files.db
        self.limit = settings.max_file_bytes

    def _too_large(self) -> TooLarge:
        return TooLarge(f"File is too large: the limit is {self.limit} bytes.", "file")

    async def upload(self, project: str, filename: str | None, purpose: str,
                     source: BinaryIO, size: int | None, expires_after: int | None) -> str:
        """A new file from an upload (``size``: as the request declared it, if it did;
        ``expires_after``: seconds)."""
        filename = _check_filename(filename)
        if size is not None and size > self.limit:
            raise self._too_large()
        expires_at = ids.now() + expires_after if expires_after else None
        try:
            return await self.files.create(project, filename, purpose, source, self.limit,
                                           expires_at)
        except blobs.TooLarge as err:
            raise self._too_large() from err

    async def list(self, project: str, purpose: str | None, page: ListParams) -> Page:
        f = tables.files
        where = [f.c.project_id == project, live()]
        if purpose is not None:
            where.append(f.c.purpose == purpose)
        async with self.db.read() as conn:
            return await objects.list_page(conn, f, where, limit=page.limit, order=page.order,
                                           after=page.after, before=page.before)

    async def retrieve(self, project: str, file_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            obj = await self.files.get(conn, file_id, project)
        if obj is None:
            raise not_found("file", file_id)
        return obj

    async def delete(self, project: str, file_id: str) -> None:
        f = tables.files
        async with self.db.write() as conn:
            count = await objects.delete_objects(conn, f, f.c.id == file_id,
                                                 f.c.project_id == project)
            if not count:
                raise not_found("file", file_id)
            await remove_file_everywhere(conn, project, file_id)
        await self.files.delete_bytes(file_id)

    async def content(self, project: str, file_id: str) -> Content:
        """The file's bytes, to stream, and their media type (by the file's name)."""
        obj = await self.retrieve(project, file_id)
        media_type = mimetypes.guess_type(obj["filename"])[0] or "application/octet-stream"
        try:
            chunks = await self.files.open(file_id)
        except FileNotFoundError:  # deleted since it was read
            raise not_found("file", file_id) from None
        return Content(chunks, int(obj["bytes"]), media_type)
