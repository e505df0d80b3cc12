"""File bytes on disk, under the data dir, named by file id (never by the client's filename)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHUNK = 1 << 20


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, file_id: str) -> Path:
        if not _SAFE_ID.match(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        # Two levels of fan-out keep directories small with many files.
        return self.root / file_id[-2:] / file_id

    async def save(self, file_id: str, source: BinaryIO, limit: int) -> int:
        """Copy ``source`` to the blob of ``file_id``; returns its size."""
        return await asyncio.to_thread(self._save, file_id, source, limit)

    def _save(self, file_id: str, source: BinaryIO, limit: int) -> int:
        target = self.path(file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        size = 0
        try:
            with partial.open("wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(limit)
                    out.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return size

    async def save_bytes(self, file_id: str, data: bytes) -> int:
        target = self.path(file_id)
        await asyncio.to_thread(self._write, target, data)
        return len(data)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, target)

    async def read(self, file_id: str) -> bytes:
        return await asyncio.to_thread(self.path(file_id).read_bytes)

    async def copy_to(self, file_id: str, destination: Path) -> None:
        await asyncio.to_thread(shutil.copyfile, self.path(file_id), destination)

    async def delete(self, file_id: str) -> None:
        await asyncio.to_thread(self.path(file_id).unlink, True)
