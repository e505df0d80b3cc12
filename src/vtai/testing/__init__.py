"""A scriptable fake OpenAI-compatible model server for tests, benchmarks and demos.

See docs/fake-model.md.
"""

from .app import FakeModelState, create_app
from .embeddings import embed
from .server import FakeModelServer, run
from .steps import (
    Call,
    Drop,
    Echo,
    Empty,
    Error,
    Garbage,
    Hang,
    Raw,
    Reply,
    ScriptItem,
    Step,
    StepFn,
    ToolCalls,
    step_from_json,
)

__all__ = [
    "Call",
    "Drop",
    "Echo",
    "Empty",
    "Error",
    "FakeModelServer",
    "FakeModelState",
    "Garbage",
    "Hang",
    "Raw",
    "Reply",
    "ScriptItem",
    "Step",
    "StepFn",
    "ToolCalls",
    "create_app",
    "embed",
    "run",
    "step_from_json",
]
