"""Views of a streaming run as Chainlit messages and steps.

Each view (message part or tool call) has one Chainlit object, created when the view first
appears and updated as it changes, so a streamed message grows in place and a tool call is one
collapsible step."""

from __future__ import annotations

from datetime import UTC, datetime

import chainlit as cl
from openai import AsyncOpenAI
from openai.types.beta.threads import Run

from vtai.assistants import ImageView, MessagePartView, SessionListener, TextView, ToolCallView
from vtai.assistants.messages import read_file

AUTHOR = "VT.ai"


class ChainlitListener(SessionListener):
    def __init__(self, client: AsyncOpenAI, sources: dict[str, str]) -> None:
        self.client = client
        self.sources = sources  # file id -> matched text, from this chat's file_search calls
        self.messages: dict[str, cl.Message] = {}
        self.steps: dict[str, cl.Step] = {}
        self.sent_images: set[str] = set()
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
            await self._image_message(view)
        else:
            await self._text_message(view)

    async def _text_message(self, view: TextView) -> None:
        message = self.messages.get(view.key)
        if message is None:
            message = self.messages[view.key] = cl.Message(content="", author=AUTHOR)
        if view.status == "in_progress":
            await message.stream_token(view.text, is_sequence=True)
            return
        self.finished.add(view.key)
        message.content = view.text + _sources_line(view)
        await message.send()
        for citation in view.citations:
            element: cl.File | cl.Text
            if citation.kind == "file_path":
                element = cl.File(name=citation.filename, display="inline",
                                  content=await read_file(self.client, citation.file_id) or b"")
            else:
                quote = self.sources.get(citation.file_id) or f"Cited from {citation.filename}."
                element = cl.Text(name=citation.filename, content=quote, display="side")
            await element.send(for_id=message.id)

    async def _image_message(self, view: ImageView) -> None:
        self.finished.add(view.key)
        if view.data is None:
            await cl.Message(content=f"(image {view.file_id} could not be read)",
                             author=AUTHOR).send()
            return
        image = cl.Image(name=f"{view.file_id}.png", content=view.data, display="inline",
                         size="large")
        await cl.Message(content="", author=AUTHOR, elements=[image]).send()

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
        for file_id in view.image_file_ids:
            if file_id not in self.sent_images:
                self.sent_images.add(file_id)
                data = await read_file(self.client, file_id)
                if data is not None:
                    await cl.Image(name=f"{file_id}.png", content=data, display="inline",
                                   size="large").send(for_id=step.id)


def _output(view: ToolCallView) -> str:
    if view.type == "file_search":
        if not view.sources:
            return "No results." if view.status == "completed" else ""
        return "\n\n".join(f"**{s.filename}** (score {s.score:.2f})"
                           + (f"\n> {s.content[:500]}" if s.content else "")
                           for s in view.sources)
    if view.type == "code_interpreter" and view.output:
        return f"```text\n{view.output}\n```"
    return view.output


def _sources_line(view: TextView) -> str:
    if not view.citations:
        return ""
    names = " · ".join(f"[{c.number}] {c.filename}" for c in view.citations)
    return f"\n\nSources: {names}"


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
