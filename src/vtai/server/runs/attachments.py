"""The files a response's items name, read for its prompt: images as data URLs, and the
name and text of ``input_file`` parts (a file by id, or its bytes inline as ``file_data``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from vtai.server.retrieval.extraction import ExtractionError, extract_text
from vtai.server.runs.images import image_urls_by_id
from vtai.server.runs.response_prompt import Attachments, image_file_ids, input_files
from vtai.server.store.db import Database
from vtai.server.store.files import FileStore

MAX_FILE_CHARS = 200_000  # of one input file's text in a prompt


async def read_attachments(items: list[dict[str, Any]], project: str, db: Database,
                           files: FileStore) -> Attachments:
    attached = Attachments(images=await image_urls_by_id(image_file_ids(items), db, files))
    for part in input_files(items):
        key = str(part.get("file_id") or part.get("filename") or part.get("file_url") or "")
        if key and key not in attached.texts:
            attached.texts[key] = await _file_text(part, project, db, files)
    return attached


async def _file_text(part: dict[str, Any], project: str, db: Database,
                     files: FileStore) -> str:
    name = str(part.get("filename") or "")
    if part.get("file_id"):
        async with db.read() as conn:
            info = await files.get(conn, part["file_id"], project)
        if info is None:
            return f"[file {part['file_id']}: not available]"
        name = name or str(info.get("filename") or "")
        try:
            data = await files.read(part["file_id"])
        except FileNotFoundError:
            return f"[file {part['file_id']}: not available]"
    elif part.get("file_data"):
        encoded = str(part["file_data"]).split(",", 1)[-1]  # (a data: URL or bare base64)
        try:
            data = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            return "[the file's data is not valid base64]"
    else:
        return f"[file at {part.get('file_url')}: not fetched (this server reads no URLs)]"
    try:
        text = await asyncio.to_thread(extract_text, name or "file.txt", data)
    except ExtractionError as err:
        return f"[file {name}: its text could not be read: {err}]"
    if len(text) > MAX_FILE_CHARS:
        text = text[:MAX_FILE_CHARS] + f"\n[... cut at {MAX_FILE_CHARS} characters]"
    return f"[file {name}]\n{text}"
