"""Object ids: OpenAI's prefixes followed by a time-ordered base62 body.

Ids sort in creation order (as bytes), so list cursors are plain id comparisons and stay valid
after the object they name is deleted (the SDK's auto-pagination deletes-while-iterating).
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
CLOCK_CHARS = 10  # an id body's (and an event id's) first digits: the clock's
_RANDOM_CHARS = 14
_lock = threading.Lock()
_last_tick = 0


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two digits at a time


def base62(value: int, width: int) -> str:
    """``value`` in ``width`` base62 digits (``width`` even)."""
    pairs = []
    for _ in range(width // 2):
        value, rem = divmod(value, 3844)
        pairs.append(_PAIRS[rem])
    return "".join(reversed(pairs))


CLOCK_LOW = 3844**2  # the span of the clock body's last four digits (the rest is cached)
_high: tuple[int, str] = (-1, "")  # the first six digits, which change every few seconds


def clock_body(tick: int) -> str:
    """The clock digits of an id made at ``tick``: ``base62(tick, CLOCK_CHARS)``, reusing
    the leading digits of the last call."""
    global _high
    high, low = divmod(tick, CLOCK_LOW)
    cached = _high  # one read: another thread may replace it meanwhile
    if cached[0] != high:
        cached = _high = (high, base62(high, CLOCK_CHARS - 4))
    hi, lo = divmod(low, 3844)
    return f"{cached[1]}{_PAIRS[hi]}{_PAIRS[lo]}"


def _next_tick() -> int:
    """Milliseconds times 4096 plus a counter: strictly increasing within this process."""
    global _last_tick
    with _lock:
        _last_tick = max(time.time_ns() // 1_000_000 * 4096, _last_tick + 1)
        return _last_tick


_RANDOM_RANGE = 62**_RANDOM_CHARS


def new_id(prefix: str) -> str:
    """A new id such as ``asst_0Ab...``; later ids compare greater."""
    body = clock_body(_next_tick())
    return f"{prefix}{body}{_random_digits()}"


def _random_digits() -> str:
    # 88 random bits folded into 14 digits (83 bits): a negligible bias, and cheaper than
    # secrets.randbelow, which draws until a value falls in range.
    return base62(int.from_bytes(os.urandom(11)) % _RANDOM_RANGE, _RANDOM_CHARS)


def _new_process_tag() -> None:
    global _process_tag
    _process_tag = _random_digits()


_process_tag = ""
_new_process_tag()
os.register_at_fork(after_in_child=_new_process_tag)


def new_event_id() -> str:
    """An id for a run event: ordered like ``new_id`` bodies, and cheaper, since a run makes
    dozens. Unique because the clock part never repeats within a process and the rest is
    this process's random tag (a new one in a forked child)."""
    return f"{clock_body(_next_tick())}{_process_tag}"


_EVENT_ID = re.compile(f"[0-9A-Za-z]{{{CLOCK_CHARS + _RANDOM_CHARS}}}")


def is_event_id(value: str) -> bool:
    """Whether ``value`` has the form of ``new_event_id``'s ids."""
    return _EVENT_ID.fullmatch(value) is not None


def now() -> int:
    """The current time in unix seconds, as every timestamp on the wire."""
    return int(time.time())
