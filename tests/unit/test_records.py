"""A run's opened message: announced to its streams first, stored right after."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from vtai.server.runs.events import Event
from vtai.server.runs.records import RunRecords

RUN = {"id": "run_1", "thread_id": "thread_1", "assistant_id": "asst_1"}
FIRST = {"content": [{"index": 0, "type": "text", "text": {"value": "Hi", "annotations": []}}]}
ANNOUNCED = ["thread.run.step.created", "thread.run.step.in_progress",
             "thread.message.created", "thread.message.in_progress", "thread.message.delta"]


class _Bus:
    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, run_id: str, event: Event) -> Event:
        assert run_id == RUN["id"]
        self.published.append(event)
        return event


class _Db:
    def __init__(self, bus: _Bus, fail: bool) -> None:
        self.bus = bus
        self.fail = fail
        self.announced_before_write: list[str] = []
        self.written: list[Any] = []

    sqlite = None  # (PostgreSQL's way: one statement, Database.run)

    async def run(self, statement: Any, params: dict[str, Any]) -> Any:
        self.announced_before_write = [event.event for event in self.bus.published]
        if self.fail:
            raise OSError("the database went away")
        self.written.append(params)


def _records(fail: bool) -> tuple[RunRecords, _Bus, _Db]:
    bus = _Bus()
    db = _Db(bus, fail)
    records: Any = RunRecords(db, bus)
    return records, bus, db


async def test_the_opened_message_and_first_delta_go_out_before_the_rows_are_stored() -> None:
    records, bus, db = _records(fail=False)
    opened = records.open_message(RUN, "proj", FIRST)
    assert [event.event for event in bus.published] == ANNOUNCED and not db.written
    await records.store_opened(opened)
    assert db.announced_before_write == ANNOUNCED
    step, message = opened.step, opened.message
    (written,) = db.written  # the step and the message, in one write
    assert (written["s_id"], written["m_id"]) == (step["id"], message["id"])
    created = orjson.loads(bus.published[2].data)
    assert created["id"] == message["id"] and created["status"] == "in_progress"
    assert step["step_details"]["message_creation"]["message_id"] == message["id"]
    delta = orjson.loads(bus.published[4].data)
    assert delta == {"id": message["id"], "object": "thread.message.delta", "delta": FIRST}
    ids = [event.id for event in bus.published[:4]]
    assert ids == sorted(ids) and len(set(ids)) == 4  # stamped in stream order


async def test_a_failed_write_of_the_opened_message_reaches_the_turn() -> None:
    records, _, db = _records(fail=True)
    opened = records.open_message(RUN, "proj", FIRST)
    with pytest.raises(OSError):  # the turn then fails the run with server_error
        await records.store_opened(opened)
    assert db.announced_before_write == ANNOUNCED
