"""File bytes: one interface (``Blobs``), kept in one of two places chosen by the
database. On SQLite they are files under the data dir (``DiskBlobs``, here); on PostgreSQL,
rows of the ``blob_chunks`` table (``pgblobs.PostgresBlobs``), so servers on several hosts
share nothing but the database.

Either way, bytes go in and come out one chunk (``CHUNK`` bytes) at a time: a blob is never
held whole in memory, unless a caller asks for it whole (``read``). Blobs are named by file id,
never by the client's filename.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from vtai.server.store.sql import Connection

if TYPE_CHECKING:
    from vtai.server.store.db import Database

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHUNK = 1 << 20  # bytes per piece read or written, and per row on PostgreSQL

T = TypeVar("T")

# What bytes may be saved from: bytes in hand, a file open for reading (read in a worker
# thread), or pieces of any size as they arrive.
Source = bytes | BinaryIO | AsyncIterable[bytes]
# Stores what the bytes belong to (a file object), given a write transaction and their size.
Record = Callable[[Connection, int], Awaitable[T]]
# Whether a blob's owner still exists, its row locked against deletion until the
# transaction ends (see Blobs.take_in_disk_bytes).
Wanted = Callable[[Connection, str], Awaitable[bool]]


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


def check_id(blob_id: str) -> str:
    if not _SAFE_ID.match(blob_id):
        raise ValueError(f"not a file id: {blob_id!r}")
    return blob_id


async def chunks(source: Source, limit: int | None = None) -> AsyncIterator[bytes]:
    """``source`` cut into chunks of ``CHUNK`` bytes, the last one shorter (none at all for
    nothing); raises TooLarge as soon as more than ``limit`` bytes came."""
    size = 0
    if isinstance(source, bytes | bytearray | memoryview):
        pieces: AsyncIterator[bytes] = _slices(bytes(source))
    elif isinstance(source, AsyncIterable):
        pieces = _rechunked(source)
    else:
        pieces = _reads(source)
    async for chunk in pieces:
        size += len(chunk)
        if limit is not None and size > limit:
            raise TooLarge(limit)
        yield chunk


async def _slices(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


async def _reads(source: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(source.read, CHUNK):
        yield chunk


async def _rechunked(source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    pending = bytearray()
    async for piece in source:
        pending += piece
        while len(pending) >= CHUNK:
            yield bytes(pending[:CHUNK])
            del pending[:CHUNK]
    if pending:
        yield bytes(pending)


async def _then(first: bytes | None, rest: AsyncGenerator[bytes, None]
                ) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


@dataclass
class Moved:
    """What ``take_in_disk_bytes`` did: blobs moved into the database and their bytes, and
    blobs left on disk because no file names them."""

    files: int = 0
    bytes: int = 0
    unowned: int = 0


class Blobs(ABC):
    """Where file bytes are kept. Reads and writes go a chunk at a time."""

    @abstractmethod
    async def save(self, blob_id: str, source: Source, limit: int | None = None) -> int:
        """The bytes of ``source`` kept as the new blob ``blob_id``; returns their size.
        Past ``limit`` bytes, raises TooLarge and keeps nothing."""

    async def save_and_record(self, blob_id: str, source: Source, limit: int | None,
                              db: Database, record: Record[T]) -> T:
        """``save``, and ``record`` what the bytes belong to, together: either both are
        kept or neither. Here (bytes outside the database) the bytes are written first,
        outside any transaction, and removed if the record's transaction fails; a store in
        the database writes both in one transaction."""
        size = await self.save(blob_id, source, limit)
        try:
            async with db.write() as conn:
                return await record(conn, size)
        except BaseException:
            await self.delete(blob_id)
            raise

    async def open(self, blob_id: str) -> AsyncIterator[bytes]:
        """The blob's chunks, in order, read as they are consumed; raises FileNotFoundError
        at once when there is no such blob."""
        rest = self._chunks(check_id(blob_id))
        first = await anext(rest, None)  # the reads start here: a missing blob raises now
        return _then(first, rest)

    @abstractmethod
    def _chunks(self, blob_id: str) -> AsyncGenerator[bytes, None]:
        """An async generator of the blob's chunks that raises FileNotFoundError before its
        first one when there is no such blob."""

    async def read(self, blob_id: str) -> bytes:
        """The whole blob, for callers that need it whole (an image sent to a model, a file
        parsed for a vector store)."""
        whole = io.BytesIO()  # its value is handed over without a copy: memory holds it once
        async for chunk in await self.open(blob_id):
            whole.write(chunk)
        return whole.getvalue()

    @abstractmethod
    def local_path(self, blob_id: str) -> AbstractAsyncContextManager[Path]:
        """A path on this host with the blob's bytes, while the context lasts (to copy
        them into a sandbox, for instance): not to be written to."""

    @abstractmethod
    async def delete(self, blob_id: str) -> None:
        """Nothing kept of the blob; none is no error."""

    async def take_in_disk_bytes(self, wanted: Wanted) -> Moved:
        """A store in the database moves the blobs that servers before it left on this
        host's disk into it (those ``wanted``); nothing to do here."""
        return Moved()


class DiskBlobs(Blobs):
    """Blobs as files under ``root``, two levels deep (``root/<last 2 chars>/<id>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, blob_id: str) -> Path:
        # Two levels of fan-out keep directories small with many files.
        return self.root / check_id(blob_id)[-2:] / blob_id

    async def save(self, blob_id: str, source: Source, limit: int | None = None) -> int:
        target = self.path(blob_id)
        partial = target.with_suffix(".partial")
        if isinstance(source, AsyncIterable):
            return await self._save_pieces(target, partial, source, limit)
        return await asyncio.to_thread(self._save_sync, target, partial, source, limit)

    @staticmethod
    def _save_sync(target: Path, partial: Path, source: bytes | BinaryIO,
                   limit: int | None) -> int:
        """A file or bytes in hand: copied in one worker thread."""
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        try:
            with partial.open("wb") as out:
                for chunk in _sync_chunks(source):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise TooLarge(limit)
                    out.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return size

    @staticmethod
    async def _save_pieces(target: Path, partial: Path, source: AsyncIterable[bytes],
                           limit: int | None) -> int:
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        size = 0
        try:
            out = await asyncio.to_thread(partial.open, "wb")
            with out:
                async for chunk in chunks(source, limit):
                    await asyncio.to_thread(out.write, chunk)
                    size += len(chunk)
            await asyncio.to_thread(os.replace, partial, target)
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        return size

    async def _chunks(self, blob_id: str) -> AsyncGenerator[bytes, None]:
        source = await asyncio.to_thread(self.path(blob_id).open, "rb")
        try:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                yield chunk
        finally:
            source.close()

    @asynccontextmanager
    async def local_path(self, blob_id: str) -> AsyncIterator[Path]:
        path = self.path(blob_id)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(blob_id)
        yield path

    async def read(self, blob_id: str) -> bytes:
        return await asyncio.to_thread(self.path(blob_id).read_bytes)

    async def delete(self, blob_id: str) -> None:
        await asyncio.to_thread(self.path(blob_id).unlink, True)

    def stored(self) -> list[Path]:
        """The blobs kept here (not those being written)."""
        found: list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            for fan in self.root.iterdir():
                if not fan.is_dir():
                    continue
                found.extend(path for path in fan.iterdir()
                             if _SAFE_ID.match(path.name) and path.is_file())
        return found


def _sync_chunks(source: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for start in range(0, len(data), CHUNK):
            yield data[start:start + CHUNK]
        return
    while chunk := source.read(CHUNK):
        yield chunk


# The disk store's name from before bytes could be kept in PostgreSQL: code that makes one
# by it (``BlobStore(data_dir / "files")``) keeps working.
BlobStore = DiskBlobs
