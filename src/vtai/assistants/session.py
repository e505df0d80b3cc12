"""A conversation with an assistant: one thread, streamed runs, function calls answered.

``AssistantSession`` is what the chat UI and ``vtai chat`` are built on. It streams each run,
turns events into view objects with the ``process_*`` functions, tells a
:class:`SessionListener` about each new or changed view, and when the run waits for function
outputs it runs the calls (:func:`process_tool_calls`) and streams on. A stream cut short is
resumed from its last event once the server answers again (see :mod:`.stream`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.beta import Assistant, AssistantStreamEvent
from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import RunStep

from vtai.assistants.errors import AssistantsError, api_errors
from vtai.assistants.files import is_image, tool_for
from vtai.assistants.functions import (
    FunctionRegistry,
    current_registry,
    process_tool_calls,
    use_functions,
)
from vtai.assistants.messages import process_thread_message
from vtai.assistants.resources import create_assistant, create_thread, provide_functions
from vtai.assistants.runs import STOPPED_STATUSES, TERMINAL_STATUSES, poll_run
from vtai.assistants.state import load_ids, save_ids
from vtai.assistants.steps import process_run_step
from vtai.assistants.stream import (
    BETA_HEADER,
    CONNECTION_ERRORS,
    EventStream,
    Snapshots,
    lost_connection,
)
from vtai.assistants.views import MessagePartView, ToolCallView

# Streamed steps carry file_search results' text only when asked for, as on OpenAI; sent as
# a query parameter (the SDK writes it as ``include[]=...``), which SDK versions without
# ``include`` on streams pass along too.
WITH_RESULT_CONTENT = {"include": ["step_details.tool_calls[*].file_search.results[*].content"]}
RECONNECT_SECONDS = 120.0  # how long a lost stream waits for the server to come back
RECONNECT_DELAY_SECONDS = 0.5


class SessionListener:
    """What a UI overrides to show a conversation as it streams."""

    async def on_message(self, view: MessagePartView) -> None:
        """A message part appeared or changed (streamed text, an image)."""

    async def on_tool_call(self, view: ToolCallView) -> None:
        """A tool call appeared or changed (code, logs, search results, function output)."""

    async def on_run(self, run: Run) -> None:
        """The run changed status; a terminal one ends :meth:`AssistantSession.send`."""

    async def on_connection_lost(self, detail: str) -> None:
        """The stream was cut (``detail`` says how); the session reconnects."""

    async def on_reconnected(self) -> None:
        """The stream goes on after :meth:`on_connection_lost`."""

    async def on_message_gone(self, view: MessagePartView) -> None:
        """A message part shown before is no longer on the server: the half answer of a
        server that died mid-run (the run's answer is written again)."""


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
        self.assistant: Assistant | None = None  # as it was when the session opened
        self.functions_provided: list[str] = []  # functions open() added to the assistant
        self.snapshots = Snapshots()  # latest state of each message and step streamed
        self.reconnect_seconds = RECONNECT_SECONDS
        self.last_event_id: str | None = None  # of the run being streamed
        self.interrupted = False  # whether its stream was lost on the way
        self.lost_run: str | None = None  # a run whose stream was lost for good
        self._sent_at = 0
        self._run_messages: set[str] = set()  # assistant messages of the run being streamed

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
        changed: list[str] = []
        if assistant is None:
            assistant = await create_assistant(
                client, config.name, config.instructions,
                [*config.tools, *functions.tools()], config.model)
        else:  # one made before: it gets the functions asked for now
            assistant, changed = await provide_functions(client, assistant, functions.tools())
        wanted_thread = thread_id or (saved.get("thread_id") if resume_thread else None)
        thread = await _existing(client.beta.threads.retrieve, wanted_thread)
        if thread is None and thread_id:
            raise AssistantsError(f"No thread found with id {thread_id!r}.")
        if thread is None:
            thread = await create_thread(client)
        session = cls(client, assistant.id, thread.id, functions=functions,
                      state_path=state_path)
        session.assistant = assistant
        session.functions_provided = changed
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
        # Images also go to the model itself, as image_file parts (the code can open them too).
        content: str | list[dict[str, Any]] = text
        images = [a.file_id for a in self.pending if is_image(a.filename)]
        if images:
            content = [{"type": "text", "text": text}, *(
                {"type": "image_file", "image_file": {"file_id": file_id}}
                for file_id in images)]
        with api_errors("send the message"):
            message = await self.client.beta.threads.messages.create(
                self.thread_id, role="user", content=content,  # type: ignore[arg-type]
                attachments=attachments)  # type: ignore[arg-type]
        self.pending = []
        self.run, self.last_event_id, self.interrupted = None, None, False
        self._sent_at = message.created_at
        self._run_messages.clear()
        try:
            with use_functions(self.functions), api_errors("run the assistant"):
                return await self._stream_run(listener, self._start_run)
        except asyncio.CancelledError:
            await asyncio.shield(self.cancel())
            raise

    async def _stream_run(self, listener: SessionListener,
                          open_stream: Callable[[], Awaitable[EventStream]]) -> Run:
        """Stream the run (its first stream opened by ``open_stream``) until it ends,
        answering its function calls on the way."""
        await self._follow(open_stream, listener)
        while True:
            run = self.run
            if run is None:
                raise AssistantsError("The server ended the stream before the run started.")
            if run.status not in STOPPED_STATUSES:
                # The stream ended early and could not be resumed: follow the run by polling.
                run = self.run = await poll_run(self.client, self.thread_id, run.id)
                await listener.on_run(run)
                self.interrupted = True
            if run.status in TERMINAL_STATUSES:
                if self.interrupted:
                    await self._reconcile(run, listener)
                return run
            await self._answer_function_calls(run, listener)

    async def _answer_function_calls(self, run: Run, listener: SessionListener) -> None:
        assert run.required_action is not None
        outputs = await process_tool_calls(run.required_action.submit_tool_outputs)
        for step in list(self.snapshots.steps.values()):
            for view in await process_run_step(self.step_references, step):
                if view.type == "function":
                    await listener.on_tool_call(view)
        await self._follow(lambda: self._post_stream(
            f"/threads/{self.thread_id}/runs/{run.id}/submit_tool_outputs",
            {"tool_outputs": outputs, "stream": True}), listener)

    async def follow(self, run: Run, listener: SessionListener | None = None) -> Run:
        """Stream a run started elsewhere (another client, or before a restart) from its
        first event until it ends, answering its function calls; returns the ended run."""
        listener = listener or SessionListener()
        # (interrupted: its history may hold the half answer of a server that died, so the
        # messages are checked against the server's at the end)
        self.run, self.last_event_id, self.interrupted = run, None, True
        self._run_messages.clear()
        try:
            with use_functions(self.functions), api_errors("follow the run"):
                return await self._stream_run(listener, self._resume)
        except asyncio.CancelledError:
            await asyncio.shield(self.cancel())
            raise

    async def active_run(self) -> Run | None:
        """The run to :meth:`follow` before sending a message: the thread's run that has not
        ended (it blocks new messages), else the one whose stream was lost for good (its
        answer was not all shown), if there is one."""
        with api_errors("look for a run in progress"):
            runs = await self.client.beta.threads.runs.list(self.thread_id, limit=1,
                                                             order="desc")
            latest = runs.data[0] if runs.data else None
            if latest and latest.status not in TERMINAL_STATUSES:
                return latest
            lost, self.lost_run = self.lost_run, None
            if lost is not None:
                return await self.client.beta.threads.runs.retrieve(lost,
                                                                    thread_id=self.thread_id)
        return None

    async def _start_run(self) -> EventStream:
        return await self._post_stream(f"/threads/{self.thread_id}/runs", {
            "assistant_id": self.assistant_id, "stream": True})

    async def _post_stream(self, path: str, body: dict[str, Any]) -> EventStream:
        return await self.client.post(
            path, body=body, cast_to=Run, stream=True, stream_cls=EventStream,
            options={"headers": BETA_HEADER, "params": WITH_RESULT_CONTENT})

    async def _resume(self) -> EventStream:
        """The stream of the run, from after the last event received (all of it if none)."""
        if self.run is None:
            self.run = await self._run_of_this_message()
            if self.run is None:  # the request that starts it never reached the server
                return await self._start_run()
        headers = {**BETA_HEADER}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return await self.client.get(
            f"/threads/{self.thread_id}/runs/{self.run.id}/events", cast_to=Run, stream=True,
            stream_cls=EventStream, options={"headers": headers,
                                             "params": WITH_RESULT_CONTENT})

    async def _run_of_this_message(self) -> Run | None:
        runs = await self.client.beta.threads.runs.list(self.thread_id, limit=1, order="desc")
        latest = runs.data[0] if runs.data else None
        return latest if latest and latest.created_at >= self._sent_at else None

    async def _follow(self, open_stream: Callable[[], Awaitable[EventStream]],
                      listener: SessionListener) -> None:
        """Read a stream to its end; when the connection drops, resume it from the last
        event received, as soon as the server answers again (for ``reconnect_seconds``)."""
        lost_at: float | None = None
        while True:
            stream: EventStream | None = None
            try:
                stream = await open_stream()
                if lost_at is not None:
                    lost_at = None
                    await listener.on_reconnected()
                async for event in stream:
                    await self._dispatch(event, listener)
                    if stream.last_event_id:
                        self.last_event_id = stream.last_event_id
                return
            except openai.NotFoundError:
                if lost_at is None:
                    raise
                return  # a server that cannot resume streams: the caller polls the run
            except CONNECTION_ERRORS as err:
                if lost_at is None:
                    lost_at = time.monotonic()
                    self.interrupted = True
                    await listener.on_connection_lost(lost_connection(err))
                elif time.monotonic() - lost_at > self.reconnect_seconds:
                    self.lost_run = self.run.id if self.run else None
                    raise AssistantsError(
                        f"Lost the connection to the server ({lost_connection(err)}), and it "
                        f"did not come back within {self.reconnect_seconds:g} seconds."
                    ) from err
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                open_stream = self._resume
            finally:
                if stream is not None:
                    with contextlib.suppress(*CONNECTION_ERRORS):
                        await stream.close()

    async def _dispatch(self, event: AssistantStreamEvent, listener: SessionListener) -> None:
        name = event.event
        if name.startswith("thread.run.step."):
            step = self.snapshots.step(event)
            if step is not None:
                _repair_call_ids(step)
                for view in await process_run_step(self.step_references, step):
                    await listener.on_tool_call(view)
        elif name.startswith("thread.run.") and isinstance(event.data, Run):
            self.run = event.data
            await listener.on_run(event.data)
        elif name.startswith("thread.message."):
            message = self.snapshots.message(event)
            if message is not None and message.role == "assistant":
                self._run_messages.add(message.id)
                for part in await process_thread_message(self.message_references, message,
                                                         self.client):
                    await listener.on_message(part)

    async def _reconcile(self, run: Run, listener: SessionListener) -> None:
        """After a lost connection: show the run's messages as the server has them, and
        take away the parts of messages it no longer has (the half answer of a server that
        died, which it wrote again from the start)."""
        with api_errors("read the answer"):
            messages = [m async for m in self.client.beta.threads.messages.list(
                self.thread_id, run_id=run.id, order="asc")]
        for message in messages:
            if message.role == "assistant":
                self._run_messages.add(message.id)
                for part in await process_thread_message(self.message_references, message,
                                                         self.client):
                    await listener.on_message(part)
        kept = {m.id for m in messages}
        for key, view in list(self.message_references.items()):
            if view.message_id in self._run_messages and view.message_id not in kept:
                del self.message_references[key]
                await listener.on_message_gone(view)

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

    async def cancel_run(self, run_id: str) -> None:
        """Cancel a run of the thread (one that has ended already is left alone)."""
        with api_errors("cancel the run"), contextlib.suppress(openai.BadRequestError):
            await self.client.beta.threads.runs.cancel(run_id, thread_id=self.thread_id)

    async def new_thread(self) -> None:
        """Start another conversation on the same assistant; the old thread stays on the
        server (to go back to it; :meth:`cleanup` deletes one)."""
        await self.cancel()
        self.uploaded.clear()
        self.pending.clear()
        self.thread_id = (await create_thread(self.client)).id
        self.message_references.clear()
        self.step_references.clear()
        self.snapshots.clear()
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
