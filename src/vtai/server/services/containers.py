"""/v1/containers and their files. A container is a code interpreter session named by its id
(store/containers.py keeps it): its files are what its /mnt/data holds for the code, uploaded,
copied from a file, or written by the code. It expires once idle for its minutes."""

from __future__ import annotations

from typing import Any

import orjson

from vtai.server.errors import TooLarge, bad_request, not_found
from vtai.server.protocol.containers import ContainerCreate
from vtai.server.protocol.lists import ListParams
from vtai.server.services.files import Content
from vtai.server.settings import Settings
from vtai.server.store import blobs, objects, tables
from vtai.server.store.containers import (
    DEFAULT_MINUTES,
    EXPIRED,
    ContainerStore,
    file_path,
    new_container,
    shown,
)
from vtai.server.store.objects import Page
from vtai.server.store.sql import Connection


class Containers:
    def __init__(self, store: ContainerStore, settings: Settings) -> None:
        self.store = store
        self.files = store.files
        self.db = store.db
        self.limit = settings.max_file_bytes

    async def create(self, project: str, body: ContainerCreate) -> dict[str, Any]:
        minutes = body.expires_after.minutes if body.expires_after else DEFAULT_MINUTES
        container = new_container(body.name, minutes, body.memory_limit or "1g")
        async with self.db.write() as conn:
            for index, file_id in enumerate(body.file_ids):
                if await self.files.get(conn, file_id, project) is None:
                    raise bad_request(f"No file found with id '{file_id}'.",
                                      f"file_ids[{index}]")
            await self.store.insert(conn, project, container)
        for file_id in body.file_ids:
            await self.add_file(project, container["id"], file_id=file_id)
        return container

    async def list(self, project: str, page: ListParams, name: str | None) -> dict[str, Any]:
        c = tables.containers
        async with self.db.read() as conn:
            found = await objects.list_page(conn, c, [c.c.project_id == project],
                                            limit=page.limit, order=page.order,
                                            after=page.after, before=page.before)
        listed = [shown(orjson.loads(row)) for row in found.rows]
        if name is not None:
            listed = [item for item in listed if item["name"] == name]
        return {"object": "list", "data": listed, "first_id": found.first_id,
                "last_id": found.last_id, "has_more": found.has_more}

    async def retrieve(self, project: str, container_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return shown(await self._container(conn, project, container_id))

    async def delete(self, project: str, container_id: str) -> None:
        if not await self.store.delete(project, container_id):
            raise not_found("container", container_id)

    async def _container(self, conn: Connection, project: str, container_id: str,
                         live: bool = False) -> dict[str, Any]:
        container = await self.store.get(conn, project, container_id)
        if container is None:
            raise not_found("container", container_id)
        if live and shown(container)["status"] == EXPIRED:
            raise bad_request(f"Container {container_id} has expired.", "container_id")
        return container

    # ----------------------------------------------------------------------- files

    async def add_file(self, project: str, container_id: str, *, file_id: str | None = None,
                       upload: tuple[str, blobs.Source] | None = None) -> dict[str, Any]:
        """A file put into the container: a copy of the file ``file_id``, or an ``upload``
        (its name and bytes). One at the same path is replaced."""
        if upload is None and file_id is None:
            raise bad_request("Give a file, or the id of one.", "file")
        async with self.db.read() as conn:
            container = await self._container(conn, project, container_id, live=True)
        try:
            if upload is not None:
                name, data = upload
                return await self.store.keep(project, container, file_path(name), data,
                                             "user", self.limit)
            assert file_id is not None
            copied = await self.store.copy_file(project, container, file_id, self.limit)
            if copied is None:
                raise not_found("file", file_id)
            return copied
        except blobs.TooLarge as err:
            raise TooLarge(f"File is too large: the limit is {self.limit} bytes.",
                           "file") from err

    async def list_files(self, project: str, container_id: str, page: ListParams) -> Page:
        f = tables.container_files
        async with self.db.read() as conn:
            await self._container(conn, project, container_id)
            return await objects.list_page(conn, f, [f.c.container_id == container_id],
                                           limit=page.limit, order=page.order,
                                           after=page.after, before=page.before)

    async def file(self, project: str, container_id: str, file_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            await self._container(conn, project, container_id)
            found = await self.store.file(conn, container_id, file_id)
        if found is None:
            raise not_found("container file", file_id)
        return found

    async def content(self, project: str, container_id: str, file_id: str) -> Content:
        found = await self.file(project, container_id, file_id)
        try:
            chunks = await self.store.open(file_id)
        except FileNotFoundError as err:
            raise not_found("container file", file_id) from err
        return Content(chunks, int(found["bytes"]), "application/octet-stream")

    async def delete_file(self, project: str, container_id: str, file_id: str) -> None:
        await self.file(project, container_id, file_id)
        if not await self.store.delete_file(container_id, file_id):
            raise not_found("container file", file_id)
