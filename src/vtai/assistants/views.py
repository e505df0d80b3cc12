"""Plain view objects: what a UI shows of messages and run steps, with no UI in them.

The ``process_*`` functions build these and keep them in ``*_references`` dicts by id, so a
message or step seen again (a later poll, a stream delta) updates its view in place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Citation:
    """A source a message's text points to, shown as ``[number]`` in the text."""

    number: int
    kind: str             # "file_citation" (a quoted file) or "file_path" (a file made by a tool)
    file_id: str
    filename: str


@dataclass
class TextView:
    """One text part of a message; ``text`` has its citations resolved to ``[n]`` marks."""

    key: str              # "<message id>:<n>" for the message's n-th text part
    message_id: str
    role: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    status: str = "in_progress"


@dataclass
class ImageView:
    """One image part of a message (an image file, usually made by code interpreter)."""

    key: str              # "<message id>:<file id>"
    message_id: str
    role: str
    file_id: str
    data: bytes | None = None  # None when the file could not be read
    status: str = "in_progress"


MessagePartView = TextView | ImageView


@dataclass
class Source:
    """One file_search result."""

    file_id: str
    filename: str
    score: float
    content: str = ""     # the matched text, when the step was fetched with its content


@dataclass
class CodeInterpreterView:
    """A code interpreter call: the code, what it printed, and the images it made."""

    id: str
    input: str
    logs: str
    image_file_ids: list[str] = field(default_factory=list)


@dataclass
class FileSearchView:
    id: str
    sources: list[Source] = field(default_factory=list)


@dataclass
class FunctionCallView:
    id: str
    name: str
    arguments: str        # JSON text, as the model wrote it
    output: str | None    # None until the run has the call's output


@dataclass
class ToolCallView:
    """One tool call of a run step, as a collapsible block shows it."""

    id: str               # the tool call's id (``call_...``)
    step_id: str
    type: str             # code_interpreter | file_search | function
    name: str
    input: str
    output: str
    language: str | None = None       # how to highlight ``input`` (python, json)
    image_file_ids: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    status: str = "in_progress"
    started_at: int | None = None
    completed_at: int | None = None
