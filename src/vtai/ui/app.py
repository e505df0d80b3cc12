"""The Chainlit app: VT.ai's Assistant mode on an Assistants v2 server (run by ``vtai ui``).

One chat is one thread; the assistant is the one picked in the settings, or else the one this
UI used last, or else a new one. New Chat starts a new thread; the old one stays on the
server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import chainlit as cl
import openai
from chainlit.context import init_ws_context
from chainlit.input_widget import Select, TextInput
from chainlit.session import WebsocketSession
from chainlit.socket import sio
from chainlit.types import ThreadDict
from openai import AsyncOpenAI

from vtai.assistants import (
    AssistantConfig,
    AssistantsError,
    AssistantSession,
    create_assistant,
    poll_run,
)
from vtai.assistants.functions import current_registry, import_functions
from vtai.assistants.runs import TERMINAL_STATUSES
from vtai.assistants.state import load_ids, save_ids
from vtai.ui.history import USER, ThreadHistory, ThreadIndex
from vtai.ui.render import ChainlitListener
from vtai.ui.settings import UISettings

log = logging.getLogger("vtai.ui")
NEW_ASSISTANT = "new"
TOOLS = ({"type": "code_interpreter"}, {"type": "retrieval"})


def _settings() -> UISettings:
    return UISettings()


def _session() -> AssistantSession | None:
    session: AssistantSession | None = cl.user_session.get("assistant_session")
    return session


@cl.on_app_startup
def load_functions() -> None:
    import_functions(_settings().function_modules())


@cl.set_chat_profiles
async def welcome(user: Any = None, language: str | None = None) -> list[cl.ChatProfile]:
    """The welcome screen (a chat profile's description) names the assistant and model in
    use, or the model of the assistant the first chat will create."""
    settings = _settings()
    client = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=0,
                         timeout=5)
    assistant_id = settings.assistant_id or load_ids(settings.state_path,
                                                     str(client.base_url)).get("assistant_id")
    assistant = None
    if assistant_id:
        with contextlib.suppress(openai.APIError):
            assistant = await client.beta.assistants.retrieve(assistant_id)
    if assistant is not None:
        text = f"Chatting with **{assistant.name or assistant.id}** on `{assistant.model}`."
    else:
        text = f"A new assistant on `{settings.model}` answers your first message."
    text += "\n\nAsk anything; attach files with the paperclip."
    return [cl.ChatProfile(name="VT.ai", markdown_description=text, icon="/public/vtai.svg",
                           default=True)]


@cl.header_auth_callback
async def local_user(headers: Any) -> cl.User:
    """One user, without a login form: Chainlit keeps a history only for a known user."""
    return cl.User(identifier=USER)


@cl.data_layer
def history() -> ThreadHistory:
    settings = _settings()
    return ThreadHistory(_client(settings), ThreadIndex(settings.state_path.parent
                                                        / "threads.json"))


@cl.on_chat_start
async def start_chat() -> None:
    await _open_chat(None)


@cl.on_chat_resume
async def resume_chat(thread: ThreadDict) -> None:
    """A chat reopened from the history (or a page reconnecting to a restarted UI) goes on
    on its thread."""
    log.info("resuming the chat of %s", thread["id"])
    await _open_chat(thread["id"])


async def _open_chat(thread_id: str | None) -> None:
    settings = _settings()
    client = _client(settings)
    try:
        session = await AssistantSession.open(
            client, assistant_id=settings.assistant_id, thread_id=thread_id,
            state_path=settings.state_path,
            config=AssistantConfig(name="VT.ai Assistant", instructions=settings.instructions,
                                   model=settings.model, tools=TOOLS))
        session.reconnect_seconds = settings.reconnect_seconds
        await _send_settings(client, session.assistant_id, settings)
    except AssistantsError as err:
        await cl.ErrorMessage(content=f"Cannot start the chat: {err}").send()
        return
    # The chat is the thread, under the thread's own id (see history.py).
    cl.context.session.thread_id = session.thread_id
    cl.user_session.set("assistant_session", session)
    cl.user_session.set("sources", {})
    if session.functions_provided:
        await cl.Message(content=f"The assistant now has the functions asked for: "
                                 f"{', '.join(session.functions_provided)}.",
                         author="VT.ai").send()


def _client(settings: UISettings) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, max_retries=1)


async def _send_settings(client: AsyncOpenAI, assistant_id: str, settings: UISettings) -> None:
    assistants = [a async for a in client.beta.assistants.list(limit=100)]
    items = {f"{a.name or 'unnamed'} ({a.id})": a.id for a in assistants}
    items["New assistant (from the fields below)"] = NEW_ASSISTANT
    await cl.ChatSettings([
        Select(id="assistant_id", label="Assistant", items=items, initial_value=assistant_id),
        TextInput(id="name", label="New assistant's name", initial="VT.ai Assistant"),
        TextInput(id="model", label="New assistant's model", initial=settings.model),
        TextInput(id="instructions", label="New assistant's instructions",
                  initial=settings.instructions, multiline=True),
    ]).send()


@cl.on_settings_update
async def update_settings(values: dict[str, Any]) -> None:
    session = _session()
    if session is None:
        return
    chosen = values.get("assistant_id") or session.assistant_id
    try:
        if chosen == NEW_ASSISTANT:
            assistant = await create_assistant(
                session.client, values.get("name") or "VT.ai Assistant",
                values.get("instructions") or "", tools=[*TOOLS, *current_registry().tools()],
                model=values.get("model") or _settings().model)
            chosen = assistant.id
            await _send_settings(session.client, chosen, _settings())
        else:
            assistant = await session.client.beta.assistants.retrieve(chosen)
    except Exception as err:  # the UI shows any failure as a message, never a traceback
        await cl.ErrorMessage(content=f"Cannot use that assistant: {_readable(err)}").send()
        return
    session.assistant_id = chosen
    if session.state_path:
        save_ids(session.state_path, str(session.client.base_url), assistant_id=chosen)
    await cl.Message(content=f"Now chatting with **{assistant.name or chosen}** "
                             f"({assistant.model}).").send()


@cl.on_message
async def answer(message: cl.Message) -> None:
    session = _session()
    if session is None:
        await cl.ErrorMessage(content="The chat could not start; reload the page.").send()
        return
    listener = ChainlitListener(session.client, cl.user_session.get("sources"))
    try:
        await _wait_for_active_run(session, listener)
        for element in message.elements or []:
            if element.path:
                await session.attach(element.path, element.name)
        run = await session.send(message.content, listener)
    except asyncio.CancelledError:  # the stop button; on_stop reports the cancelled run
        await listener.close()
        raise
    except Exception as err:  # the UI shows any failure as a message, never a traceback
        log.warning("chat failed: %r", err)
        await listener.close()
        await cl.ErrorMessage(content=_readable(err)).send()
        return
    await _report_end(run.status, run.last_error.message if run.last_error else None,
                      run.incomplete_details.reason if run.incomplete_details else None)


async def _wait_for_active_run(session: AssistantSession, listener: ChainlitListener) -> None:
    """A run of the thread that has not ended (the server restarted, another client started
    it) blocks new messages: show its answer as it comes, with a button to cancel it."""
    run = await session.active_run()
    if run is None:
        return
    # (Chainlit disables action buttons while a message is answered: Stop is the way out)
    if run.status in TERMINAL_STATUSES:
        notice = "The answer cut off when the connection was lost:"
    else:
        notice = (f"A run of this chat is still going ({run.status}): its answer shows "
                  "here, then your message is sent. **Stop** cancels that run (then send "
                  "your message again).")
    await cl.Message(content=notice, author="VT.ai").send()
    run = await session.follow(run, listener)
    await _report_end(run.status, run.last_error.message if run.last_error else None,
                      run.incomplete_details.reason if run.incomplete_details else None)


async def _report_end(status: str, error: str | None, reason: str | None) -> None:
    if status == "failed":
        await cl.ErrorMessage(content=f"The run failed: {error or 'no reason given'}").send()
    elif status == "incomplete":
        await cl.Message(content=f"(The answer is incomplete: {reason}.)").send()
    elif status == "expired":
        await cl.ErrorMessage(content="The run expired before it finished.").send()


@sio.on("stop")
async def stop_pressed(sid: str) -> None:
    """Chainlit's own stop handler, without its "Task manually stopped." message: the chat
    says once what happened to the run (see :func:`stop`)."""
    session = WebsocketSession.get(sid)
    if session is None:
        return
    init_ws_context(session)
    if session.current_task:
        session.current_task.cancel()
    await stop()


async def stop() -> None:
    """Chainlit has cancelled the answering task, which asked the server to cancel the run;
    say so once the server confirms."""
    session = _session()
    if session is None or session.run is None:
        return
    try:
        await session.cancel()
        run = await poll_run(session.client, session.thread_id, session.run.id)
    except AssistantsError as err:
        await cl.ErrorMessage(content=f"Could not stop the run: {err}").send()
        return
    await cl.Message(content=f"Stopped: the run is {run.status}.").send()


def _readable(err: Exception) -> str:
    """What the user reads about a failure: the client module's errors say what failed; any
    other exception is a fault of the UI, logged with its details."""
    if isinstance(err, AssistantsError):
        return str(err)
    log.error("unexpected failure", exc_info=err)
    return "Something went wrong in the chat UI (its log has the details). Try again."
