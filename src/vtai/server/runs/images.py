"""Image files in thread messages (``image_file`` parts), as the data URLs a vision model
reads: the files API keeps their bytes, the chat completions API takes images inline."""

from __future__ import annotations

import base64
import mimetypes
from typing import Any, cast

import orjson
from sqlalchemy import select

from vtai.server.store import tables
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # OpenAI's limit for one image in a request

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def media_type(data: bytes, filename: str) -> str:
    """The image's type from its first bytes, else from its file name."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def image_file_ids(messages: list[dict[str, Any]]) -> set[str]:
    """Image files the model is shown: the user's (an assistant's message is sent as its
    text: the chat API takes no image from the assistant)."""
    return {part["image_file"]["file_id"] for message in messages if message["role"] == "user"
            for part in message["content"] if part["type"] == "image_file"}


async def image_urls(messages: list[dict[str, Any]], db: Database, files: FileStore
                     ) -> dict[str, str]:
    """Data URLs of the messages' image files, by file id (see image_urls_by_id)."""
    return await image_urls_by_id(image_file_ids(messages), db, files)


async def image_urls_by_id(wanted: set[str], db: Database, files: FileStore
                           ) -> dict[str, str]:
    """Data URLs of image files, by file id. A file deleted since, or larger than an image
    may be, is left out (the prompt says so in its place)."""
    if not wanted:
        return {}
    f = tables.files
    async with db.read() as conn:
        rows = (await conn.execute(select(f.c.id, f.c.data)
                                   .where(f.c.id.in_(sorted(wanted))))).all()
    urls: dict[str, str] = {}
    for file_id, data in cast(list[tuple[str, str]], rows):
        info = orjson.loads(data)
        if int(info.get("bytes") or 0) > MAX_IMAGE_BYTES:
            continue
        try:
            content = await files.read(file_id)
        except FileNotFoundError:
            continue
        kind = media_type(content, str(info.get("filename") or ""))
        urls[file_id] = f"data:{kind};base64,{base64.b64encode(content).decode()}"
    return urls
