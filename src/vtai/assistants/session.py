"""A conversation with an assistant: one thread, streamed runs, function calls answered.

``AssistantSession`` is what the chat UI and ``vtai chat`` are built on. It streams each run
through the SDK's event handler, turns events into view objects with the ``process_*``
functions, tells a :class:`SessionListener` about each new or changed view, and when the run
waits for function outputs it runs the calls (:func:`process_tool_calls`) and streams on."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai import AsyncAssistantEventHandler, AsyncOpenAI
from openai.types.beta import AssistantStreamEvent
from openai.types.beta.threads import Message, MessageDelta, Run
from openai.types.beta.threads.runs import RunStep, RunStepDelta

from vtai.assistants.errors import AssistantsError, api_errors
from vtai.assistants.files import tool_for
from vtai.assistants.functions import (
    FunctionRegistry,
    current_registry,
    process_tool_calls,
    use_functions,
)
from vtai.assistants.messages import process_thread_message
from vtai.assistants.resources import create_assistant, create_thread
from vtai.assistants.runs import STOPPED_STATUSES, TERMINAL_STATUSES, poll_run
from vtai.assistants.state import load_ids, save_ids
from vtai.assistants.steps import process_run_step
from vtai.assistants.views import MessagePartView, ToolCallView

# Streamed steps carry file_search results' text only when asked for, as on OpenAI; sent as
# a query parameter (the SDK writes it as ``include[]=...``), which SDK versions without
# ``include`` on streams pass along too.
WITH_RESULT_CONTENT = {"include": ["step_details.tool_calls[*].file_search.results[*].content"]}


class SessionListener:
    """What a UI overrides to show a conversation as it streams."""

    async def on_message(self, view: MessagePartView) -> None:
        """A message part appeared or changed (streamed text, an image)."""

    async def on_tool_call(self, view: ToolCallView) -> None:
        """A tool call appeared or changed (code, logs, search results, function output)."""

    async def on_run(self, run: Run) -> None:
        """The run changed status; a terminal one ends :meth:`AssistantSession.send`."""


@dataclass
class Attachment:
    file_id: str
    filename: str
    tool: str  # code_interpreter | file_search


@dataclass
class AssistantConfig:
    """The assistant a session creates when it has none to reuse."""

    name: str = "VT.ai Assistant"
    instructions: str = "You are a helpful assistant. Use your tools when they help."
    model: str = "o3"
    tools: tuple[dict[str, Any], ...] = ({"type": "code_interpreter"}, {"type": "retrieval"})


class AssistantSession:
    """One conversation (thread) with one assistant.

    Build it with :meth:`open`; with a ``state_path`` the assistant's id (and, with
    ``resume_thread``, the thread's) is saved there and reused by the next session."""

    def __init__(self, client: AsyncOpenAI, assistant_id: str, thread_id: str, *,
                 functions: FunctionRegistry | None = None,
                 state_path: Path | None = None) -> None:
        self.client = client
        self.assistant_id = assistant_id
        self.thread_id = thread_id
        self.functions = functions or current_registry()
        self.state_path = state_path
        self.message_references: dict[str, MessagePartView] = {}
        self.step_references: dict[str, ToolCallView] = {}
        self.run: Run | None = None
        self.pending: list[Attachment] = []
        self.uploaded: list[str] = []  # file ids this session uploaded, deleted by cleanup()
        self.steps: dict[str, RunStep] = {}  # latest snapshot of each step streamed

    @classmethod
    async def open(cls, client: AsyncOpenAI, *, assistant_id: str | None = None,
                   thread_id: str | None = None, config: AssistantConfig | None = None,
                   functions: FunctionRegistry | None = None, state_path: Path | None = None,
                   resume_thread: bool = False) -> AssistantSession:
        """A session on ``assistant_id`` (else the saved one, else a new assistant made from
        ``config`` with the registry's functions) and ``thread_id`` (else, with
        ``resume_thread``, the saved one, else a new thread)."""
        config = config or AssistantConfig()
        functions = functions or current_registry()
        saved = load_ids(state_path, str(client.base_url)) if state_path else {}
        assistant = await _existing(client.beta.assistants.retrieve,
                                    assistant_id or saved.get("assistant_id"))
        if assistant is None and assistant_id:
            raise AssistantsError(f"No assistant found with id {assistant_id!r}.")
        if assistant is None:
            assistant = await create_assistant(
                client, config.name, config.instructions,
                [*config.tools, *functions.tools()], config.model)
        wanted_thread = thread_id or (saved.get("thread_id") if resume_thread else None)
        thread = await _existing(client.beta.threads.retrieve, wanted_thread)
        if thread is None and thread_id:
            raise AssistantsError(f"No thread found with id {thread_id!r}.")
        if thread is None:
            thread = await create_thread(client)
        session = cls(client, assistant.id, thread.id, functions=functions,
                      state_path=state_path)
        session._save()
        return session

    async def attach(self, path: Path | str, filename: str | None = None) -> Attachment:
        """Upload a file (named ``filename``, by default its own name) for the next message;
        documents go to file_search, other files to code_interpreter."""
        try:
            content = await asyncio.to_thread(_read, path)
        except OSError as err:
            raise AssistantsError(f"Cannot read {path}: {err.strerror or err}") from err
        name = filename or Path(path).name
        with api_errors(f"upload {name}"):
            uploaded = await self.client.files.create(file=(name, content),
                                                      purpose="assistants")
        self.uploaded.append(uploaded.id)
        attachment = Attachment(uploaded.id, name, tool_for(name))
        self.pending.append(attachment)
        return attachment

    async def send(self, text: str, listener: SessionListener | None = None) -> Run:
        """Add ``text`` (with the attached files) to the thread and stream a run of the
        assistant until it ends, answering its function calls on the way.

        Returns the finished run; cancelling the caller's task cancels the run too."""
        listener = listener or SessionListener()
        attachments = [{"file_id": a.file_id, "tools": [{"type": a.tool}]}
                       for a in self.pending]
        if not text.strip():
            text = "(see the attached files)" if attachments else text
        with api_errors("send the message"):
            await self.client.beta.threads.messages.create(
                self.thread_id, role="user", content=text,
                attachments=attachments)  # type: ignore[arg-type]
        self.pending = []
        self.run = None
        try:
            with use_functions(self.functions), api_errors("run the assistant"):
                return await self._stream_run(listener)
        except asyncio.CancelledError:
            await asyncio.shield(self.cancel())
            raise

    async def _stream_run(self, listener: SessionListener) -> Run:
        await self._consume(self.client.beta.threads.runs.stream(
            thread_id=self.thread_id, assistant_id=self.assistant_id,
            event_handler=_Handler(self, listener), extra_query=WITH_RESULT_CONTENT))
        while True:
            run = self.run
            if run is None:
                raise AssistantsError("The server ended the stream before the run started.")
            if run.status not in STOPPED_STATUSES:
                # The stream ended early (a proxy cut it): follow the run by polling instead.
                run = self.run = await poll_run(self.client, self.thread_id, run.id)
                await listener.on_run(run)
            if run.status in TERMINAL_STATUSES:
                return run
            await self._answer_function_calls(run, listener)

    async def _answer_function_calls(self, run: Run, listener: SessionListener) -> None:
        assert run.required_action is not None
        outputs = await process_tool_calls(run.required_action.submit_tool_outputs)
        for step in list(self.steps.values()):
            for view in await process_run_step(self.step_references, step):
                if view.type == "function":
                    await listener.on_tool_call(view)
        await self._consume(self.client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=self.thread_id, run_id=run.id, tool_outputs=outputs,
            event_handler=_Handler(self, listener), extra_query=WITH_RESULT_CONTENT))

    @staticmethod
    async def _consume(manager: Any) -> None:
        async with manager as stream:
            await stream.until_done()

    async def cancel(self) -> None:
        """Cancel the run in progress, if any (a run that already ended is left alone)."""
        run = self.run
        if run is None or run.status in TERMINAL_STATUSES or run.status == "cancelling":
            return
        with api_errors("cancel the run"):
            try:
                self.run = await self.client.beta.threads.runs.cancel(
                    run.id, thread_id=self.thread_id)
            except openai.BadRequestError:
                return  # it ended meanwhile

    async def new_thread(self) -> None:
        """Clean up this conversation and start another on the same assistant."""
        await self.cleanup()
        self.thread_id = (await create_thread(self.client)).id
        self.message_references.clear()
        self.step_references.clear()
        self.steps.clear()
        self.run = None
        self._save()

    async def cleanup(self) -> None:
        """Delete the thread and the files uploaded in this session."""
        await self.cancel()
        for file_id in self.uploaded:
            with api_errors("delete a file"), contextlib.suppress(openai.NotFoundError):
                await self.client.files.delete(file_id)
        self.uploaded.clear()
        self.pending.clear()
        with api_errors("delete the thread"), contextlib.suppress(openai.NotFoundError):
            await self.client.beta.threads.delete(self.thread_id)
        base_url = str(self.client.base_url)
        # Another session (a second chat window) may have saved its own thread meanwhile.
        if self.state_path and load_ids(self.state_path, base_url).get("thread_id") \
                == self.thread_id:
            save_ids(self.state_path, base_url, thread_id=None)

    def _save(self) -> None:
        if self.state_path:
            save_ids(self.state_path, str(self.client.base_url),
                     assistant_id=self.assistant_id, thread_id=self.thread_id)


def _repair_call_ids(step: RunStep) -> None:
    """Undo ``call_Xcall_X``: a server that repeats a tool call's id in each of its deltas
    (OpenAI sends it in the first only) gets it concatenated by the SDK's delta merging."""
    for call in getattr(step.step_details, "tool_calls", None) or []:
        call_id = getattr(call, "id", None) or ""
        second = call_id.find("call_", 1)
        if second > 0 and call_id == call_id[:second] * (len(call_id) // second):
            call.id = call_id[:second]


def _read(path: Path | str) -> bytes:
    return Path(path).expanduser().read_bytes()


async def _existing(retrieve: Any, object_id: str | None) -> Any:
    """The object with this id, or None when there is no id or no such object."""
    if not object_id:
        return None
    try:
        with api_errors("look up a saved id"):
            return await retrieve(object_id)
    except AssistantsError as err:
        if err.status == 404:
            return None
        raise


class _Handler(AsyncAssistantEventHandler):
    """Feeds one stream's events to the session's views and listener."""

    def __init__(self, session: AssistantSession, listener: SessionListener) -> None:
        super().__init__()
        self.session = session
        self.listener = listener

    async def on_event(self, event: AssistantStreamEvent) -> None:
        if event.event.startswith("thread.run.") and isinstance(event.data, Run):
            self.session.run = event.data
            await self.listener.on_run(event.data)

    async def on_message_created(self, message: Message) -> None:
        await self._message(message)

    async def on_message_delta(self, delta: MessageDelta, snapshot: Message) -> None:
        await self._message(snapshot)

    async def on_message_done(self, message: Message) -> None:
        await self._message(message)

    async def on_run_step_created(self, run_step: RunStep) -> None:
        await self._step(run_step)

    async def on_run_step_delta(self, delta: RunStepDelta, snapshot: RunStep) -> None:
        await self._step(snapshot)

    async def on_run_step_done(self, run_step: RunStep) -> None:
        await self._step(run_step)

    async def _message(self, message: Message) -> None:
        if message.role != "assistant":
            return
        for view in await process_thread_message(self.session.message_references, message,
                                                 self.session.client):
            await self.listener.on_message(view)

    async def _step(self, step: RunStep) -> None:
        _repair_call_ids(step)
        self.session.steps[step.id] = step
        for view in await process_run_step(self.session.step_references, step):
            await self.listener.on_tool_call(view)
