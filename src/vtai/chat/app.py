"""The ``vtai chat`` loop: read a line, stream the assistant's answer, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from openai import AsyncOpenAI
from rich.console import Console

from vtai.assistants import AssistantConfig, AssistantsError, AssistantSession
from vtai.chat.display import TerminalListener

HELP = "Commands: /file PATH attaches a file to your next message, /new starts a new thread, " \
       "/exit quits (Ctrl-C stops an answer)."


async def run_chat(base_url: str, api_key: str, assistant_id: str | None, model: str,
                   state_path: Path, resume: bool = True, console: Console | None = None
                   ) -> int:
    """Chat until /exit or end of input; returns the exit code."""
    console = console or Console(highlight=False)
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=1)
    try:
        session = await AssistantSession.open(
            client, assistant_id=assistant_id, state_path=state_path, resume_thread=resume,
            config=AssistantConfig(model=model))
    except AssistantsError as err:
        console.print(f"[red]{err}[/]")
        return 1
    console.print(f"[dim]Assistant {session.assistant_id}, thread {session.thread_id}. "
                  f"{HELP}[/]")
    downloads = state_path.parent / "chat-files"
    while True:
        try:
            line = console.input("[bold green]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not await _command(session, line, console):
                    return 0
                continue
            await _answer(session, line, TerminalListener(console, client, downloads), console)
        except AssistantsError as err:
            console.print(f"[red]{err}[/]")


async def _command(session: AssistantSession, line: str, console: Console) -> bool:
    """Run a slash command; False means quit."""
    name, _, argument = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/new":
        await session.new_thread()
        console.print(f"[dim]New thread {session.thread_id}.[/]")
    elif name == "/file" and argument.strip():
        attachment = await session.attach(argument.strip())
        console.print(f"[dim]Attached {attachment.filename} ({attachment.tool}) to your "
                      "next message.[/]")
    else:
        console.print(HELP)
    return True


async def _answer(session: AssistantSession, text: str, listener: TerminalListener,
                  console: Console) -> None:
    console.print("[bold blue]assistant>[/]")
    task = asyncio.create_task(session.send(text, listener))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        run = await task
    except asyncio.CancelledError:
        listener.stop()
        console.print("[yellow]Stopped: the run is cancelled.[/]")
        return
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        listener.stop()
    if run.status == "failed":
        reason = run.last_error.message if run.last_error else "no reason given"
        console.print(f"[red]The run failed: {reason}[/]")
    elif run.status != "completed":
        console.print(f"[yellow]The run ended {run.status}.[/]")
