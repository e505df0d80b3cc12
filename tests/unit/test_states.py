"""The run state machine, as a table: every pair of statuses is allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from vtai.server.runs import states
from vtai.server.store import tables

ALLOWED = {
    ("queued", "in_progress"), ("queued", "cancelling"), ("queued", "cancelled"),
    ("queued", "failed"), ("queued", "expired"),
    ("in_progress", "requires_action"), ("in_progress", "completed"),
    ("in_progress", "incomplete"), ("in_progress", "failed"), ("in_progress", "cancelling"),
    ("in_progress", "expired"),
    ("requires_action", "queued"), ("requires_action", "in_progress"),
    ("requires_action", "cancelling"), ("requires_action", "expired"),
    ("requires_action", "failed"),
    ("cancelling", "cancelled"), ("cancelling", "failed"), ("cancelling", "expired"),
}
ALL = ["queued", "in_progress", "requires_action", "cancelling", "cancelled", "failed",
       "completed", "incomplete", "expired"]


@pytest.mark.parametrize(("current", "target"), list(itertools.product(ALL, ALL)))
def test_transition_table(current: str, target: str) -> None:
    allowed = (current, target) in ALLOWED
    assert states.can_move(current, target) is allowed
    if allowed:
        states.check(current, target)
    else:
        with pytest.raises(states.InvalidTransition):
            states.check(current, target)


def test_terminal_and_active() -> None:
    assert {"cancelled", "failed", "completed", "incomplete", "expired"} == states.TERMINAL
    assert {"queued", "in_progress", "requires_action", "cancelling"} == states.ACTIVE
    assert set(states.TRANSITIONS) == set(ALL)
    # the store's own list (its unique index of a thread's active run) is the same
    assert set(tables.ACTIVE_RUN_STATUSES) == states.ACTIVE
