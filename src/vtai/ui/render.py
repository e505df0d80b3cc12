"""Views of a streaming run as Chainlit messages and steps.

Each view (message part or tool call) has one Chainlit object, created when the view first
appears and updated as it changes, so a streamed message grows in place and a tool call is one
collapsible step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import chainlit as cl
from openai import AsyncOpenAI
from openai.types.beta.threads import Run

from vtai.assistants import ImageView, MessagePartView, SessionListener, TextView, ToolCallView
from vtai.assistants.messages import read_file
from vtai.assistants.views import Citation

AUTHOR = "VT.ai"
PASSAGE_CHARS = 1500  # of a cited passage, opened from its footnote


class ChainlitListener(SessionListener):
    def __init__(self, client: AsyncOpenAI, sources: dict[str, str]) -> None:
        self.client = client
        self.sources = sources  # file id -> matched text, from this chat's file_search calls
        self.messages: dict[str, cl.Message] = {}
        self.steps: dict[str, cl.Step] = {}
        self.sent_images: set[str] = set()
        self.sent: set[str] = set()  # messages already sent whole (updated from then on)
        self.finished: set[str] = set()
        self.run: Run | None = None
        self.notice: cl.Message | None = None  # "lost the connection", while it is lost

    async def on_run(self, run: Run) -> None:
        self.run = run

    async def on_connection_lost(self, detail: str) -> None:
        self.notice = cl.Message(content=f"Lost the connection to the server ({detail}): "
                                         "waiting for it to come back…", author=AUTHOR)
        await self.notice.send()

    async def on_reconnected(self) -> None:
        if self.notice is not None:
            await self.notice.remove()
            self.notice = None

    async def on_message_gone(self, view: MessagePartView) -> None:
        message = self.messages.pop(view.key, None)
        self.finished.discard(view.key)
        if message is not None:
            await message.remove()

    async def on_message(self, view: MessagePartView) -> None:
        if view.key in self.finished:
            return
        if isinstance(view, ImageView):
            await self._image(view)
        else:
            await self._text_message(view)

    async def _text_message(self, view: TextView) -> None:
        message = self.messages.get(view.key)
        if message is None:
            message = self.messages[view.key] = cl.Message(content="", author=AUTHOR)
        if view.status == "in_progress" and view.key not in self.sent:
            await message.stream_token(view.text, is_sequence=True)
            return
        message.content = view.text
        if view.status == "in_progress":
            await message.update()
            return
        self.finished.add(view.key)
        await (message.update() if view.key in self.sent else message.send())
        self.sent.add(view.key)
        notes = footnotes(view.citations, self.sources)
        if notes:
            await cl.CustomElement(name="Footnotes", display="inline",
                                   props={"notes": notes}).send(for_id=message.id)
        for citation in view.citations:
            if citation.kind == "file_path":  # a file the code wrote, to download
                data = await read_file(self.client, citation.file_id)
                await cl.File(name=PurePosixPath(citation.filename).name, display="inline",
                              content=data or b"").send(for_id=message.id)

    async def _image(self, view: ImageView) -> None:
        """An image goes with its message's text (the chart the text talks about), once."""
        self.finished.add(view.key)
        if view.file_id in self.sent_images:
            return
        self.sent_images.add(view.file_id)
        if view.data is None:
            await cl.Message(content=f"(image {view.file_id} could not be read)",
                             author=AUTHOR).send()
            return
        image = cl.Image(name=f"{view.file_id}.png", content=view.data, display="inline",
                         size="large")
        key = f"{view.message_id}:0"  # the message's first text part
        message = self.messages.get(key)
        if message is None:  # no text yet: the image opens the message, its text follows
            message = self.messages[key] = cl.Message(content="", author=AUTHOR,
                                                      elements=[image])
            await message.send()
            self.sent.add(key)
            return
        await image.send(for_id=message.id)

    async def close(self) -> None:
        """End the messages still streaming (the run was stopped, or the connection lost
        for good), keeping what they show."""
        await self.on_reconnected()  # (the notice goes: an error message says what happened)
        for key, message in self.messages.items():
            if key not in self.finished:
                self.finished.add(key)
                await message.send()

    async def on_tool_call(self, view: ToolCallView) -> None:
        for source in view.sources:
            if source.content:
                self.sources[source.file_id] = source.content
        step = self.steps.get(view.id)
        new = step is None
        if step is None:
            # Under the answering task's run step, so it shows in order with the messages.
            parent = cl.context.current_step
            step = self.steps[view.id] = cl.Step(name=view.name, type="tool",
                                                 show_input=view.language or "text",
                                                 parent_id=parent.id if parent else None)
            step.start = _iso(view.started_at)
        step.input = view.input
        step.output = _output(view)
        if view.completed_at:
            step.end = _iso(view.completed_at)
        if view.status == "failed":
            step.is_error = True
        await (step.send() if new else step.update())
        # (images the code made show once, with the answer that talks about them)


def _output(view: ToolCallView) -> str:
    if view.type == "file_search":
        if not view.sources:
            return "No results." if view.status == "completed" else ""
        return "\n\n".join(f"**{s.filename}** (score {s.score:.2f})"
                           + (f"\n> {excerpt(s.content, 300)}" if s.content else "")
                           for s in view.sources)
    if view.type == "code_interpreter" and view.output:
        return f"```text\n{view.output}\n```"
    return view.output


def footnotes(citations: list[Citation], passages: dict[str, str]) -> list[dict[str, Any]]:
    """The props of the Footnotes element (elements/Footnotes.jsx) for a text's citations of
    files (``passages``: file id -> the text the search found)."""
    return [{"number": c.number, "filename": c.filename,
             "passage": excerpt(passages.get(c.file_id, ""), PASSAGE_CHARS)}
            for c in citations if c.kind == "file_citation"]


def excerpt(text: str, limit: int) -> str:
    """The text as one plain paragraph (no markdown headings or quotes at full size), cut at
    a word near ``limit`` characters."""
    words = " ".join(line.lstrip("#> ").strip() for line in text.splitlines()).split()
    flat = " ".join(words)
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit)
    return flat[:cut if cut > limit // 2 else limit].rstrip(" ,;:") + " …"


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
