"""Containers and their files in the database. A container file's bytes are a blob named by
its id, beside file objects' (see blobs.py); its row says where it is in /mnt/data."""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import select

from vtai.server import ids
from vtai.server.store import blobs, objects, tables
from vtai.server.store.files import FileStore
from vtai.server.store.sql import Connection

DATA = "/mnt/data"
RUNNING, EXPIRED = "running", "expired"
DEFAULT_MINUTES = 20  # OpenAI's: a container expires 20 minutes after it was last active


def new_container(name: str, minutes: int = DEFAULT_MINUTES, memory_limit: str = "1g"
                  ) -> dict[str, Any]:
    now = ids.now()
    return {"id": ids.new_id("cntr_"), "object": "container", "name": name,
            "created_at": now, "status": RUNNING, "last_active_at": now,
            "expires_after": {"anchor": "last_active_at", "minutes": minutes},
            "memory_limit": memory_limit, "network_policy": {"type": "disabled"}}


def shown(container: dict[str, Any]) -> dict[str, Any]:
    """A container as returned: ``expired`` once idle past its minutes."""
    idle = container["expires_after"]["minutes"] * 60
    if container["status"] == RUNNING and ids.now() > container["last_active_at"] + idle:
        return {**container, "status": EXPIRED}
    return container


def file_path(name: str) -> str:
    """Where a file named ``name`` is in a container: its base name, under /mnt/data (a path
    below /mnt/data is kept as it is)."""
    name = name.replace("\\", "/")
    if name.startswith(DATA + "/") and ".." not in name.split("/"):
        return name
    return f"{DATA}/{posixpath.basename(name).strip() or 'file'}"


class ContainerStore:
    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.db = files.db

    async def insert(self, conn: Connection, project: str, container: dict[str, Any]) -> None:
        await objects.insert_object(conn, tables.containers, container, project,
                                    status=container["status"], expires_at=None)

    @staticmethod
    async def get(conn: Connection, project: str, container_id: str) -> dict[str, Any] | None:
        return await objects.get_object(conn, tables.containers, container_id, project)

    async def touch(self, conn: Connection, container: dict[str, Any]) -> None:
        """The container is in use now."""
        container["last_active_at"] = ids.now()
        await objects.save_object(conn, tables.containers, container)

    async def keep(self, project: str, container: dict[str, Any], path: str,
                   data: blobs.Source, source: str, limit: int | None) -> dict[str, Any]:
        """Store a file of the container at ``path``, replacing one there (raises
        blobs.TooLarge past ``limit`` bytes): its object."""
        f = tables.container_files
        cfile_id = ids.new_id("cfile_")
        replaced: list[str] = []

        async def record(conn: Connection, size: int) -> dict[str, Any]:
            replaced.extend((await conn.execute(select(f.c.id).where(
                f.c.container_id == container["id"], f.c.path == path))).scalars().all())
            await objects.delete_objects(conn, f, f.c.id.in_(replaced))
            obj = {"id": cfile_id, "object": "container.file", "created_at": ids.now(),
                   "bytes": size, "container_id": container["id"], "path": path,
                   "source": source}
            await objects.insert_object(conn, f, obj, project, container_id=container["id"],
                                        path=path)
            await self.touch(conn, container)
            return obj

        obj: dict[str, Any] = await self.files.blobs.save_and_record(
            cfile_id, data, limit, self.db, record)
        for old in replaced:
            await self.files.blobs.delete(old)
        return obj

    async def copy_file(self, project: str, container: dict[str, Any], file_id: str,
                        limit: int | None) -> dict[str, Any] | None:
        """A copy of the file ``file_id`` as a file of the container, given by the user, at
        /mnt/data/its name (see keep); None if the project has no such file."""
        async with self.db.read() as conn:
            stored = await self.files.get(conn, file_id, project)
        if stored is None:
            return None
        return await self.keep(project, container, file_path(stored["filename"]),
                               await self.files.open(file_id), "user", limit)

    @staticmethod
    async def file(conn: Connection, container_id: str, file_id: str
                   ) -> dict[str, Any] | None:
        f = tables.container_files
        row = (await conn.execute(select(f.c.data).where(
            f.c.id == file_id, f.c.container_id == container_id))).first()
        return None if row is None else dict(orjson.loads(row.data))

    @staticmethod
    async def files_of(conn: Connection, container_id: str) -> list[dict[str, Any]]:
        f = tables.container_files
        rows = (await conn.execute(select(f.c.data).where(f.c.container_id == container_id)
                                   .order_by(f.c.id))).all()
        return [orjson.loads(row.data) for row in rows]

    async def open(self, file_id: str) -> AsyncIterator[bytes]:
        """A container file's bytes, a chunk at a time (FileNotFoundError if gone)."""
        return await self.files.blobs.open(file_id)

    async def delete_file(self, container_id: str, file_id: str) -> bool:
        f = tables.container_files
        async with self.db.write() as conn:
            gone = await objects.delete_objects(conn, f, f.c.id == file_id,
                                                f.c.container_id == container_id)
        if gone:
            await self.files.blobs.delete(file_id)
        return gone > 0

    async def delete(self, project: str, container_id: str) -> bool:
        c, f = tables.containers, tables.container_files
        async with self.db.write() as conn:
            gone = await objects.delete_objects(conn, c, c.c.id == container_id,
                                                c.c.project_id == project)
            if not gone:
                return False
            file_ids = list((await conn.execute(select(f.c.id).where(
                f.c.container_id == container_id))).scalars().all())
            await objects.delete_objects(conn, f, f.c.container_id == container_id)
        for file_id in file_ids:
            await self.files.blobs.delete(file_id)
        return True
