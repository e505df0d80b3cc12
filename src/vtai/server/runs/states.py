"""The run state machine: the one place that says which status may follow which.

queued -> in_progress -> (requires_action -> queued -> in_progress)* ->
completed | incomplete | failed | cancelling -> cancelled | expired
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"
IN_PROGRESS: Final = "in_progress"
REQUIRES_ACTION: Final = "requires_action"
CANCELLING: Final = "cancelling"
CANCELLED: Final = "cancelled"
FAILED: Final = "failed"
COMPLETED: Final = "completed"
INCOMPLETE: Final = "incomplete"
EXPIRED: Final = "expired"

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    QUEUED: frozenset({IN_PROGRESS, CANCELLING, CANCELLED, FAILED, EXPIRED}),
    IN_PROGRESS: frozenset({REQUIRES_ACTION, COMPLETED, INCOMPLETE, FAILED, CANCELLING, EXPIRED}),
    # Submitting tool outputs queues the run again for the worker, as OpenAI reports it.
    REQUIRES_ACTION: frozenset({QUEUED, IN_PROGRESS, CANCELLING, EXPIRED, FAILED}),
    CANCELLING: frozenset({CANCELLED, FAILED, EXPIRED}),
    CANCELLED: frozenset(),
    FAILED: frozenset(),
    COMPLETED: frozenset(),
    INCOMPLETE: frozenset(),
    EXPIRED: frozenset(),
}

TERMINAL: Final = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)
ACTIVE: Final = frozenset(TRANSITIONS) - TERMINAL

# The timestamp field a status sets on the run object when it is entered.
STAMPS: Final = {
    IN_PROGRESS: "started_at",
    COMPLETED: "completed_at",
    FAILED: "failed_at",
    CANCELLED: "cancelled_at",
    INCOMPLETE: "completed_at",
}


# Entering these, a run no longer has an ``expires_at`` (an expired run keeps the moment).
ENDS_EXPIRY: Final = TERMINAL - {EXPIRED}


class InvalidTransition(Exception):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a run cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]


def check(current: str, target: str) -> None:
    if not can_move(current, target):
        raise InvalidTransition(current, target)


# Stream events that end one SSE response: the run is finished or waits for the client.
PAUSING: Final = frozenset({REQUIRES_ACTION}) | TERMINAL
