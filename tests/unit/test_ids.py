"""Object and event ids: time-ordered, unique, and the clock digits right."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from vtai.server import ids


@given(st.integers(min_value=0, max_value=62**10 - 1))
def test_clock_body_matches_plain_base62(tick: int) -> None:
    assert ids.clock_body(tick) == ids.base62(tick, ids.CLOCK_CHARS)


def test_clock_body_after_its_leading_digits_change() -> None:
    low = ids.CLOCK_LOW
    for tick in (low - 1, low, 5 * low - 1, 5 * low + 7, low - 2):
        assert ids.clock_body(tick) == ids.base62(tick, ids.CLOCK_CHARS)


def test_ids_sort_in_creation_order_and_never_repeat() -> None:
    made = []
    for _ in range(2000):
        made.append(ids.new_id("msg_"))
        made.append("msg_" + ids.new_event_id())
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(len(i) == len("msg_") + 24 for i in made)


def test_event_ids_of_a_forked_child_differ_from_the_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its tag, then leave without running pytest's cleanup
        os.write(write, ids.new_event_id()[ids.CLOCK_CHARS:].encode())
        os._exit(0)
    os.close(write)
    child_tag = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert len(child_tag) == 14
    assert child_tag != ids.new_event_id()[ids.CLOCK_CHARS:]
