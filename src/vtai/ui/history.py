"""The chat history (Chainlit's data layer), kept by the Assistants server itself.

A chat of the UI is a thread of the server, under the thread's own id (the UI gives Chainlit's
session the thread's id): the history sidebar lists the UI's threads, newest first, and a chat
reopened from it shows the thread's messages, read from the server. The server has no "list
threads" call, so the UI keeps the ids of its threads, newest last, in a small file of its data
dir; a thread's title is in its metadata on the server (``vtai_ui_title``), so any UI of the
same server shows it. Steps and elements are not stored twice: the server's messages are the
record."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import openai
from chainlit.data.base import BaseDataLayer
from chainlit.element import ElementDict
from chainlit.step import StepDict
from chainlit.types import (
    Feedback,
    PageInfo,
    PaginatedResponse,
    Pagination,
    ThreadDict,
    ThreadFilter,
)
from chainlit.user import PersistedUser, User
from openai import AsyncOpenAI
from openai.types.beta.threads import Message

from vtai.assistants.messages import process_thread_message, read_file
from vtai.assistants.steps import process_run_step
from vtai.assistants.views import ImageView, MessagePartView, TextView
from vtai.ui.render import footnotes

RESULT_CONTENT: Final = "step_details.tool_calls[*].file_search.results[*].content"
TITLE_KEY = "vtai_ui_title"
MARKER_KEY = "vtai_ui"  # threads the UI made, marked on the server too
TITLE_CHARS = 120
USER = "local"  # the one user of a local UI (header auth, see app.py)


class ThreadIndex:
    """The UI's thread ids, in the order they were started, in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ids(self) -> list[str]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [i for i in saved if isinstance(i, str)] if isinstance(saved, list) else []

    def add(self, thread_id: str) -> None:
        ids = self.ids()
        if thread_id not in ids:
            self._write([*ids, thread_id])

    def remove(self, thread_id: str) -> None:
        self._write([i for i in self.ids() if i != thread_id])

    def _write(self, ids: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ids))
        os.replace(tmp, self.path)


class ThreadHistory(BaseDataLayer):
    def __init__(self, client: AsyncOpenAI, index: ThreadIndex) -> None:
        self.client = client
        self.index = index

    async def get_user(self, identifier: str) -> PersistedUser | None:
        return PersistedUser(id=identifier, identifier=identifier, createdAt=_iso(0))

    async def create_user(self, user: User) -> PersistedUser | None:
        return await self.get_user(user.identifier)

    async def get_thread_author(self, thread_id: str) -> str:
        return USER if thread_id in self.index.ids() else ""

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter
                           ) -> PaginatedResponse[ThreadDict]:
        ids = self.index.ids()[::-1]
        if pagination.cursor in ids:
            ids = ids[ids.index(pagination.cursor) + 1:]
        threads: list[ThreadDict] = []
        gone: list[str] = []
        for thread_id in ids:
            if len(threads) == pagination.first:
                break
            thread = await self._thread(thread_id)
            if thread is None:
                gone.append(thread_id)
            elif not filters.search or filters.search.lower() in (thread["name"] or "").lower():
                threads.append(thread)
        for thread_id in gone:  # deleted on the server (by another client)
            self.index.remove(thread_id)
        more = bool(threads) and threads[-1]["id"] != (ids[-1] if ids else None)
        return PaginatedResponse(data=threads, pageInfo=PageInfo(
            hasNextPage=more, startCursor=threads[0]["id"] if threads else None,
            endCursor=threads[-1]["id"] if threads else None))

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        if thread_id not in self.index.ids():
            return None
        thread = await self._thread(thread_id)
        if thread is None:
            return None
        references: dict[str, Any] = {}
        try:
            messages = [m async for m in self.client.beta.threads.messages.list(
                thread_id, order="asc", limit=100)]
        except openai.APIError:
            messages = []
        elements: list[ElementDict] = []
        for message in messages:
            views = await process_thread_message(references, message, self.client)
            texts = [v for v in views if isinstance(v, TextView)]
            thread["steps"].append(_step(thread_id, message.id, message.role,
                                         "\n\n".join(v.text for v in texts),
                                         message.created_at))
            elements += await self._elements(thread_id, message, views)
        thread["elements"] = elements
        return thread

    async def _elements(self, thread_id: str, message: Message,
                        views: list[MessagePartView]) -> list[ElementDict]:
        """What the answer showed besides its text: its images, footnotes and the files the
        code wrote (as data URLs: the server's files need its key, the browser has none)."""
        elements = []
        for view in views:
            if isinstance(view, ImageView) and view.data:
                elements.append(_element(thread_id, message.id, "image", f"{view.file_id}.png",
                                         url=_data_url(view.data, "image/png"), size="large"))
            if not isinstance(view, TextView):
                continue
            if any(c.kind == "file_citation" for c in view.citations):
                notes = footnotes(view.citations, await self._passages(thread_id, message))
                elements.append(_element(thread_id, message.id, "custom", "Footnotes",
                                         props={"notes": notes}))
            for citation in view.citations:
                data = (await read_file(self.client, citation.file_id)
                        if citation.kind == "file_path" else None)
                if data is not None:
                    elements.append(_element(
                        thread_id, message.id, "file", PurePosixPath(citation.filename).name,
                        url=_data_url(data, "application/octet-stream")))
        return elements

    async def _passages(self, thread_id: str, message: Message) -> dict[str, str]:
        """file id -> the text its run's searches found (the steps keep it)."""
        passages: dict[str, str] = {}
        if not message.run_id:
            return passages
        try:
            steps = [s async for s in self.client.beta.threads.runs.steps.list(
                message.run_id, thread_id=thread_id, include=[RESULT_CONTENT])]
        except openai.APIError:
            return passages
        for step in steps:
            for view in await process_run_step({}, step):
                for source in view.sources:
                    passages.setdefault(source.file_id, source.content)
        return passages

    async def update_thread(self, thread_id: str, name: str | None = None,
                            user_id: str | None = None, metadata: dict[str, Any] | None = None,
                            tags: list[str] | None = None) -> None:
        """Chainlit calls this at a chat's first message (with its text as ``name``): the
        thread joins the history."""
        if name is None and user_id is None:
            return  # (the UI's session values: nothing the history needs)
        self.index.add(thread_id)
        if name:
            # (the title is a nicety: the chat goes on without it)
            with contextlib.suppress(openai.APIError):
                await self.client.beta.threads.update(thread_id, metadata={
                    MARKER_KEY: "1", TITLE_KEY: _title(name)})

    async def delete_thread(self, thread_id: str) -> None:
        self.index.remove(thread_id)
        with contextlib.suppress(openai.NotFoundError):
            await self.client.beta.threads.delete(thread_id)

    async def _thread(self, thread_id: str) -> ThreadDict | None:
        try:
            thread = await self.client.beta.threads.retrieve(thread_id)
        except openai.NotFoundError:
            return None
        metadata = thread.metadata if isinstance(thread.metadata, dict) else {}
        return ThreadDict(id=thread.id, createdAt=_iso(thread.created_at),
                          name=str(metadata.get(TITLE_KEY) or "Untitled chat"), userId=USER,
                          userIdentifier=USER, tags=None, metadata={}, steps=[], elements=[])

    # Feedback, steps and elements are not kept: the server's messages are the record.
    async def delete_feedback(self, feedback_id: str) -> bool:
        return True

    async def upsert_feedback(self, feedback: Feedback) -> str:
        return ""

    async def create_element(self, element: Any) -> None:
        return None

    async def get_element(self, thread_id: str, element_id: str) -> Any:
        return None

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        return None

    async def create_step(self, step_dict: StepDict) -> None:
        return None

    async def update_step(self, step_dict: StepDict) -> None:
        return None

    async def delete_step(self, step_id: str) -> None:
        return None

    async def get_favorite_steps(self, user_id: str) -> list[StepDict]:
        return []

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        return None


def _step(thread_id: str, message_id: str, role: str, text: str, created_at: int
          ) -> StepDict:
    when = _iso(created_at)
    return StepDict(id=message_id, threadId=thread_id, parentId=None,
                    name="VT.ai" if role == "assistant" else "User",
                    type="assistant_message" if role == "assistant" else "user_message",
                    output=text, input="", createdAt=when, start=when, end=when,
                    streaming=False, isError=False, waitForAnswer=False, metadata={})


def _element(thread_id: str, message_id: str, kind: str, name: str, **fields: Any
             ) -> ElementDict:
    return ElementDict(id=str(uuid.uuid4()), threadId=thread_id, forId=message_id,
                       type=kind, name=name, display="inline", **fields)  # type: ignore[typeddict-item]


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _title(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TITLE_CHARS else flat[:TITLE_CHARS - 1] + "…"


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
