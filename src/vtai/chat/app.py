"""The ``vtai chat`` loop: read a line, stream the assistant's answer, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from openai.types.beta.threads import Run
from rich.console import Console

from vtai.assistants import AssistantConfig, AssistantsError, AssistantSession
from vtai.assistants.runs import TERMINAL_STATUSES
from vtai.chat.display import TerminalListener

log = logging.getLogger("vtai.chat")
LOG_NAME = "chat.log"  # beside the saved ids: what went wrong, with the details
HELP = "Commands: /file PATH attaches a file to your next message, /new starts a new thread, " \
       "/exit quits (Ctrl-C stops an answer)."


async def run_chat(base_url: str, api_key: str, assistant_id: str | None, model: str,
                   state_path: Path, resume: bool = True, console: Console | None = None
                   ) -> int:
    """Chat until /exit or end of input; returns the exit code."""
    console = console or Console(highlight=False)
    _log_to(state_path.parent / LOG_NAME)
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
    if session.functions_provided:
        console.print(f"[dim]The assistant now has the functions asked for: "
                      f"{', '.join(session.functions_provided)}.[/]")
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
        except Exception:  # a fault of the chat itself: said once, and the chat goes on
            log.exception("the chat failed")
            console.print("[red]Something went wrong in the chat (the details are in "
                          f"{state_path.parent / LOG_NAME}). Try again.[/]")


def _log_to(path: Path) -> None:
    """Warnings go to a file, not between the lines of the chat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


async def _command(session: AssistantSession, line: str, console: Console) -> bool:
    """Run a slash command; False means quit."""
    name, _, argument = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/new":
        old = session.thread_id
        await session.new_thread()
        console.print(f"[dim]New thread {session.thread_id} (the old one, {old}, stays on "
                      "the server).[/]")
    elif name == "/file" and argument.strip():
        attachment = await session.attach(argument.strip())
        console.print(f"[dim]Attached {attachment.filename} ({attachment.tool}) to your "
                      "next message.[/]")
    else:
        console.print(HELP)
    return True


async def _answer(session: AssistantSession, text: str, listener: TerminalListener,
                  console: Console) -> None:
    active = await session.active_run()
    if active is not None:
        # (the server restarted mid-run, or another client started it): it blocks messages
        if active.status in TERMINAL_STATUSES:
            console.print("[yellow]The answer cut off when the connection was lost:[/]")
        else:
            console.print(f"[yellow]A run of this thread is still going ({active.status}): "
                          "its answer comes first (Ctrl-C cancels it).[/]")
        console.print("[bold blue]assistant>[/]")
        if not await _stream(session.follow(active, listener), listener, console):
            return
    console.print("[bold blue]assistant>[/]")
    await _stream(session.send(text, listener), listener, console)


async def _stream(answering: Coroutine[Any, Any, Run], listener: TerminalListener,
                  console: Console) -> bool:
    """Show a run as it streams until it ends; False if Ctrl-C stopped it."""
    task = asyncio.create_task(answering)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        run = await task
    except asyncio.CancelledError:
        listener.stop()
        console.print("[yellow]Stopped: the run is cancelled.[/]")
        return False
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        listener.stop()
    if run.status == "failed":
        reason = run.last_error.message if run.last_error else "no reason given"
        console.print(f"[red]The run failed: {reason}[/]")
    elif run.status != "completed":
        console.print(f"[yellow]The run ended {run.status}.[/]")
    return True
