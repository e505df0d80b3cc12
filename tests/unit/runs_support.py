"""Helpers for the unit tests of a run's records: a run object, stored as a row, and a bus
that records what is published."""

from __future__ import annotations

from typing import Any

from vtai.server import ids
from vtai.server.runs import states
from vtai.server.runs.events import Event
from vtai.server.store import objects, tables
from vtai.server.store.db import Database


class RecordingBus:
    """An event bus that keeps what is published, in order."""

    def __init__(self) -> None:
        self.published: list[tuple[str, Event]] = []

    def publish(self, run_id: str, event: Event) -> Event:
        self.published.append((run_id, event))
        return event


def new_run(status: str = states.IN_PROGRESS) -> dict[str, Any]:
    """A run object of thread ``thread_1``, with a new id."""
    now = ids.now()
    return {
        "id": ids.new_id("run_"), "object": "thread.run", "created_at": now,
        "thread_id": "thread_1", "assistant_id": "asst_1", "status": status,
        "required_action": None, "last_error": None, "expires_at": now + 600,
        "started_at": now, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "incomplete_details": None, "model": "m", "instructions": "", "tools": [],
        "metadata": {}, "usage": None, "temperature": None, "top_p": None,
        "max_prompt_tokens": None, "max_completion_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "response_format": "auto", "tool_choice": "auto", "parallel_tool_calls": True,
    }


async def insert_run(db: Database, run: dict[str, Any]) -> None:
    """Store ``run`` as a row of project ``proj``."""
    async with db.write() as conn:
        await conn.sql(*objects.insert_statement(
            tables.runs, run, "proj", objects.dumps(run), thread_id=run["thread_id"],
            status=run["status"]))
