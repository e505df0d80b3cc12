"""A turn that ends (failed, cancelled) while its message's write is still under way: the
write is waited for first, then what it stored is closed. On SQLite that write needs the
write lock, which the closing transaction would hold while waiting for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.runs_support import RecordingBus, insert_run, new_run
from vtai.server.runs import states
from vtai.server.runs.endings import Endings
from vtai.server.runs.model_call import RunFailure
from vtai.server.runs.records import RunRecords
from vtai.server.runs.turn_state import Turn
from vtai.server.store.db import Database, Sql

_MESSAGE = Sql("SELECT data FROM messages WHERE id = :id")


async def _turn_storing_its_message(store: Database, run: dict[str, Any]
                                    ) -> tuple[Endings, RunRecords, Turn]:
    """An executor's turn whose message was announced and whose write has not begun (it
    begins in a moment, as one waiting for a connection would)."""
    records = RunRecords(store, RecordingBus())  # type: ignore[arg-type]
    endings = Endings(records, {})
    await insert_run(store, run)
    turn = Turn()
    opened = records.open_message(run, "proj")
    turn.hold(opened)

    async def store_soon() -> None:
        await asyncio.sleep(0.1)  # a scripted delay: the ending has to wait for this write
        await records.store_opened(opened)

    turn.storing = asyncio.ensure_future(store_soon())
    return endings, records, turn


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
async def test_an_ending_turn_closes_the_message_it_was_still_storing(
        store: Database, ending: str) -> None:
    run = new_run(states.IN_PROGRESS if ending == "failed" else states.CANCELLING)
    endings, records, turn = await _turn_storing_its_message(store, run)
    assert turn.storing is not None and not turn.storing.done()
    if ending == "failed":
        end = endings.fail(run["id"], turn, RunFailure("server_error", "gone"))
    else:
        end = endings.cancel(run, turn)
    assert await asyncio.wait_for(end, 5) == ending
    assert turn.storing is None
    steps = await records.run_steps(run["id"])
    assert [step["status"] for step in steps] == [ending]
    async with store.read() as conn:
        message = await conn.sql(_MESSAGE, {"id": turn.message["id"]})  # type: ignore[index]
    assert '"status":"incomplete"' in message.rows[0][0]
