"""Thread messages into view objects: text with its citations resolved, and images."""

from __future__ import annotations

from collections.abc import MutableMapping

import openai
from openai import AsyncOpenAI
from openai.types.beta.threads import Message, Text

from vtai.assistants.views import Citation, ImageView, MessagePartView, TextView


async def process_thread_message(message_references: MutableMapping[str, MessagePartView],
                                 thread_message: Message, client: AsyncOpenAI
                                 ) -> list[MessagePartView]:
    """Turn a message (or a streamed snapshot of one) into one view per content part and keep
    them in ``message_references`` under ``"<message id>:<n>"`` for its n-th text part and
    ``"<message id>:<file id>"`` for an image: a part seen before is updated in place, never
    added twice. Image files are read once, with ``client``.

    Returns the message's views, in part order."""
    views: list[MessagePartView] = []
    texts = 0
    for part in thread_message.content:
        # Keys count text parts and name images, not content indices: a server may put the
        # images of a finished message before the text it streamed at index 0.
        view: MessagePartView
        if part.type in ("text", "refusal"):
            key = f"{thread_message.id}:{texts}"
            texts += 1
            known = message_references.get(key)
            view = known if isinstance(known, TextView) else TextView(
                key, thread_message.id, thread_message.role, "")
            if part.type == "text":
                view.text, view.citations = await resolve_citations(part.text, view.citations,
                                                                    client)
            else:
                view.text = part.refusal
        elif part.type == "image_file":
            file_id = part.image_file.file_id
            key = f"{thread_message.id}:{file_id}"
            known = message_references.get(key)
            view = known if isinstance(known, ImageView) else ImageView(
                key, thread_message.id, thread_message.role, file_id,
                await read_file(client, file_id))
        else:  # image_url parts are the user's own links: nothing to show beyond them
            continue
        view.status = thread_message.status
        message_references[key] = view
        views.append(view)
    return views


async def resolve_citations(text: Text, known: list[Citation], client: AsyncOpenAI
                            ) -> tuple[str, list[Citation]]:
    """The text with each annotation replaced by ``[n]`` (one number per cited file), and the
    citations. A markdown link to a tool-made file (``[label](sandbox:/mnt/data/x)``) becomes
    ``label [n]``. File names already in ``known`` are not looked up again."""
    value = text.value
    names = {c.file_id: c.filename for c in known}
    citations: dict[str, Citation] = {}
    pieces: list[str] = []
    cursor = 0
    for annotation in sorted(text.annotations or [], key=lambda a: a.start_index):
        if annotation.type == "file_citation":
            file_id = annotation.file_citation.file_id
        else:
            file_id = annotation.file_path.file_id
        start, end = _span(value, annotation.text, annotation.start_index, cursor)
        if start < 0:
            continue
        if file_id not in names:
            names[file_id] = await filename(client, file_id)
        citation = citations.setdefault(file_id, Citation(
            len(citations) + 1, annotation.type, file_id, names[file_id]))
        mark = f"[{citation.number}]"
        if annotation.type == "file_path":
            start, end, mark = _unwrap_link(value, start, end, cursor, mark)
        pieces += [value[cursor:start], mark]
        cursor = end
    pieces.append(value[cursor:])
    return "".join(pieces), list(citations.values())


def _span(value: str, marker: str, start: int, cursor: int) -> tuple[int, int]:
    """Where the annotation's text is: at its indices, or else (indices counted differently,
    or the text still streaming) its next occurrence."""
    if start >= cursor and value[start:start + len(marker)] == marker:
        return start, start + len(marker)
    found = value.find(marker, cursor) if marker else -1
    return found, found + len(marker)


def _unwrap_link(value: str, start: int, end: int, cursor: int, mark: str
                 ) -> tuple[int, int, str]:
    if value[start - 2:start] == "](" and value[end:end + 1] == ")":
        opening = value.rfind("[", cursor, start - 2)
        if opening >= 0:
            label = value[opening + 1:start - 2]
            return opening, end + 1, f"{label} {mark}"
    return start, end, mark


async def filename(client: AsyncOpenAI, file_id: str) -> str:
    """The file's name, or its id when it cannot be read (deleted, another project's)."""
    try:
        return (await client.files.retrieve(file_id)).filename
    except openai.APIError:
        return file_id


async def read_file(client: AsyncOpenAI, file_id: str) -> bytes | None:
    """The file's bytes, or None when it cannot be read."""
    try:
        return (await client.files.content(file_id)).content
    except openai.APIError:
        return None
