"""Views of a streaming run in the terminal, with rich.

The message being written is a live Markdown block, redrawn as its text grows (so citation
marks resolved late still show right); each tool call is printed as a panel once it is done."""

from __future__ import annotations

from pathlib import Path

from openai import AsyncOpenAI
from openai.types.beta.threads import Run
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from vtai.assistants import ImageView, MessagePartView, SessionListener, TextView, ToolCallView
from vtai.assistants.messages import read_file


class TerminalListener(SessionListener):
    def __init__(self, console: Console, client: AsyncOpenAI, downloads: Path) -> None:
        self.console = console
        self.client = client
        self.downloads = downloads  # where images from the run are saved to be opened
        self.live: Live | None = None
        self.live_key: str | None = None
        self.done: set[str] = set()
        self.announced: set[str] = set()
        self.run: Run | None = None

    async def on_run(self, run: Run) -> None:
        self.run = run

    async def on_connection_lost(self, detail: str) -> None:
        self.stop()
        self._print(Text(f"Lost the connection to the server ({detail}): waiting for it to "
                         "come back… (Ctrl-C gives up)", style="yellow"))

    async def on_reconnected(self) -> None:
        self._print(Text("Reconnected: the answer goes on.", style="yellow"))

    async def on_message_gone(self, view: MessagePartView) -> None:
        if self.live_key == view.key:
            self.stop()
        self.done.discard(view.key)
        self._print(Text("(The server restarted the answer: the part above is replaced by "
                         "what follows.)", style="yellow"))

    async def on_message(self, view: MessagePartView) -> None:
        if view.key in self.done:
            return
        if isinstance(view, ImageView):
            self.done.add(view.key)
            self._print(self._image(view.file_id, view.data))
            return
        if self.live_key != view.key:
            self.stop()
            self.live = Live(console=self.console, refresh_per_second=12,
                             vertical_overflow="visible")
            self.live.start()
            self.live_key = view.key
        assert self.live is not None
        self.live.update(self._text(view), refresh=True)
        if view.status != "in_progress":
            self.done.add(view.key)
            self.stop()
            await self._save_files(view)

    async def on_tool_call(self, view: ToolCallView) -> None:
        finished = view.status != "in_progress" or (view.type == "function" and view.output)
        if view.id in self.done:
            return
        if not finished:
            if view.id not in self.announced:
                self.announced.add(view.id)
                self._print(Text(f"▸ {view.name} …", style="dim"))
            return
        self.done.add(view.id)
        self._print(self._tool_panel(view))

    def stop(self) -> None:
        """End the live block, leaving its last drawing on screen."""
        if self.live is not None:
            self.live.stop()
        self.live = None
        self.live_key = None

    def _print(self, renderable: RenderableType) -> None:
        # Printed above the live message, if one is being written: it stays where it is.
        self.console.print(renderable, soft_wrap=isinstance(renderable, Text))

    def _text(self, view: TextView) -> RenderableType:
        body = Markdown(view.text or "…")
        cited = [c for c in view.citations if c.kind == "file_citation"]
        if not cited:
            return body
        sources = Text("\n".join(f"[{c.number}] {c.filename}" for c in cited), style="cyan")
        return Group(body, Text("Sources:", style="bold cyan"), sources)

    async def _save_files(self, view: TextView) -> None:
        """Files the code wrote (linked from the answer) are saved to be opened."""
        for citation in view.citations:
            if citation.kind != "file_path":
                continue
            data = await read_file(self.client, citation.file_id)
            if data is None:
                self._print(Text(f"[{citation.number}] {citation.filename}: could not be "
                                 "downloaded", style="magenta"))
                continue
            self.downloads.mkdir(parents=True, exist_ok=True)
            path = self.downloads / Path(citation.filename).name
            path.write_bytes(data)
            self._print(Text(f"[{citation.number}] file saved to {path}", style="magenta"))

    def _tool_panel(self, view: ToolCallView) -> RenderableType:
        parts: list[RenderableType] = []
        if view.input:
            parts.append(Syntax(view.input, view.language or "text", word_wrap=True))
        if view.type == "file_search":
            parts += [Text(f"{s.filename}  (score {s.score:.2f})" +
                           (f"\n  {s.content[:300]}" if s.content else ""))
                      for s in view.sources] or [Text("No results.")]
        elif view.output:
            parts.append(Text(view.output.rstrip("\n"), style="green"))
        if view.image_file_ids:  # (saved once, with the answer)
            parts.append(Text(f"{len(view.image_file_ids)} image(s), with the answer",
                              style="dim"))
        style = "red" if view.status == "failed" else "blue"
        return Panel(Group(*parts), title=view.name, title_align="left", border_style=style)

    def _image(self, file_id: str, data: bytes | None) -> Text:
        if data is None:
            return Text(f"[image {file_id}]", style="magenta")
        self.downloads.mkdir(parents=True, exist_ok=True)
        path = self.downloads / f"{file_id}.png"
        path.write_bytes(data)
        return Text(f"[image saved to {path}]", style="magenta")
