"""What one turn of a run holds while it executes: the message and steps it writes, the model
call's answer so far (see runs.accumulator) and the tool calls in it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from vtai.server.runs.accumulator import Accumulator, CallDraft
from vtai.server.runs.records import OpenedMessage


@dataclass
class ToolCall:
    id: str
    draft: CallDraft  # the call as the model streams it
    # Its index in the step's tool_calls, as streamed: functions take theirs as they stream,
    # built-in tools when they run.
    position: int | None = None
    entry: dict[str, Any] | None = None  # a built-in tool's call as the step holds it

    @property
    def name(self) -> str:
        return self.draft.name

    @property
    def arguments(self) -> str:
        return self.draft.arguments

    def step_entry(self) -> dict[str, Any]:
        """The call as the tool_calls step holds it."""
        if self.entry is not None:
            return self.entry
        return {"id": self.id, "type": "function", "function": {
            "name": self.name, "arguments": self.arguments, "output": None}}


@dataclass
class Turn:
    """What one model call produced so far, and what the turn made before it."""

    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    text: str = ""
    tool_step: dict[str, Any] | None = None
    answer: Accumulator = field(default_factory=Accumulator)  # the model call's answer
    # The model's tool calls in the order they came, by the draft each one streams into.
    calls: dict[CallDraft, ToolCall] = field(default_factory=dict)
    earlier_text: str = ""  # of a message closed when the model turned to tool calls
    usage: dict[str, int] | None = None
    # calls of built-in tools made since the run's last message, by tool type
    builtin_calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The run's steps by id, as they change, when this turn made all of them (the run's
    # first turn): its end need not read them back. None: they are read.
    steps: dict[str, dict[str, Any]] | None = None
    # The write of the message's and its step's rows, while it is under way (see
    # Executor._open_message).
    storing: asyncio.Task[None] | None = None
    # The message a text answer goes into, opened with the run's start, until the model's
    # first token (see Executor._open_and_start).
    untouched: OpenedMessage | None = None

    @property
    def finish_reason(self) -> str | None:
        return self.answer.finish_reason

    def hold(self, opened: OpenedMessage) -> None:
        """Hold a message and its step before they are stored: if the turn is interrupted
        meanwhile, what was stored of them is closed (see Endings.close_open_objects)."""
        self.message_step, self.message = opened.step, opened.message
        self.made_step(opened.step)

    def made_step(self, step: dict[str, Any]) -> None:
        if self.steps is not None:
            self.steps[step["id"]] = step

    def next_position(self) -> int:
        """The tool_calls index the next call streamed takes."""
        return sum(call.position is not None for call in self.calls.values())

    def step_calls(self) -> list[dict[str, Any]]:
        """The tool calls streamed so far, as the step holds them, in their streamed order."""
        placed = sorted((c for c in self.calls.values() if c.position is not None),
                        key=lambda c: c.position or 0)
        return [c.step_entry() for c in placed]

    def next_model_call(self) -> None:
        """Start another model call in the same turn (after built-in tools ran)."""
        self.message = self.message_step = self.tool_step = None
        self.text = self.earlier_text = ""
        self.answer = Accumulator()
        self.calls = {}
        self.usage = None

    async def stored(self, whatever_came: bool = False) -> None:
        """Wait for the write of the message, if it is under way: its failure fails the
        run, unless ``whatever_came`` (the run is ending: before the transaction that closes
        what is stored, which on SQLite that write would wait for otherwise)."""
        storing, self.storing = self.storing, None
        if storing is None:
            return
        if whatever_came:
            await asyncio.gather(storing, return_exceptions=True)
        else:
            await storing
