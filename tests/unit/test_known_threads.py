"""runs.known_threads: what a process knows of threads and assistants for a run's start, and
Database.presence, which decides whether it may guess from it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest

from vtai.server.metrics import Metrics
from vtai.server.runs import known_threads
from vtai.server.runs.known_threads import Known, KnownThreads
from vtai.server.store.db import Database


class _Db:
    """The one attribute KnownThreads reads of a database, when its watch does not run."""

    is_sqlite = False


def _known(alone: bool = True) -> KnownThreads:
    known = KnownThreads(_Db(), Metrics())  # type: ignore[arg-type]
    known.alone = alone
    return known


def _guesses(known: KnownThreads, guess: str) -> float:
    value = known.metrics.registry.get_sample_value("vtai_run_starts_guessed_total",
                                                    {"guess": guess})
    return value or 0.0


def test_a_thread_is_known_from_its_creation_until_a_run_starts_on_it() -> None:
    known = _known()
    known.assistant_read("asst_1", "proj", '{"id": "asst_1"}')
    known.thread_made("thread_1", "proj", [(0, "msg_2", "b"), (0, "msg_1", "a")])
    known.message_added(known.adding_message("thread_1"), (0, "msg_3", "c"))
    known.message_added(known.adding_message("thread_other"), (0, "msg_9", "z"))  # unknown
    start = known.run_starts("thread_1", "asst_1", "proj")
    assert start == Known('{"id": "asst_1"}',
                          [(0, "msg_1", "a"), (0, "msg_2", "b"), (0, "msg_3", "c")])
    assert known.run_starts("thread_1", "asst_1", "proj") is None  # its run changes it
    assert known.run_starts("thread_other", "asst_1", "proj") is None


def test_nothing_is_guessed_across_projects_or_without_the_assistant() -> None:
    known = _known()
    known.thread_made("thread_1", "proj", [(0, "msg_1", "a")])
    known.thread_made("thread_2", "proj", [(0, "msg_1", "a")])
    known.assistant_read("asst_1", "other", "{}")
    assert known.run_starts("thread_1", "asst_1", "other") is None  # the thread's project
    assert known.run_starts("thread_2", "asst_1", "proj") is None  # the assistant's
    known.thread_made("thread_3", "proj", [])
    assert known.run_starts("thread_3", "asst_missing", "proj") is None


def test_a_thread_changed_while_a_message_is_added_is_not_known_again() -> None:
    """Meanwhile a run started on it (which reads it), a message was modified, another
    message was being added, or the process stopped being alone."""
    known = _known()
    known.assistant_read("asst_1", "proj", "{}")
    for change in ("run", "modified", "another message", "not alone"):
        known.alone = True
        known.thread_made("thread_1", "proj", [(0, "msg_1", "a")])
        adding = known.adding_message("thread_1")
        assert known.run_starts("thread_1", "asst_1", "proj") is None  # being added: read
        known.thread_made("thread_1", "proj", [(0, "msg_1", "a")])
        adding = known.adding_message("thread_1")
        if change == "run":
            known.run_starts("thread_1", "asst_1", "proj")
        elif change == "modified":
            known.forget_thread("thread_1")
        elif change == "another message":
            other = known.adding_message("thread_1")
            known.message_added(other, (0, "msg_3", "c"))
        else:
            known.alone = False
        known.message_added(adding, (0, "msg_2", "b"))
        known.alone = True
        known.assistant_read("asst_1", "proj", "{}")
        assert known.run_starts("thread_1", "asst_1", "proj") is None, change


def test_changes_not_followed_forget_the_thread_or_the_assistant() -> None:
    known = _known()
    known.assistant_read("asst_1", "proj", "{}")
    for thread_id in ("thread_1", "thread_2"):
        known.thread_made(thread_id, "proj", [(0, "msg_1", "a")])
    known.forget_thread("thread_1")
    assert known.run_starts("thread_1", "asst_1", "proj") is None
    known.forget_assistant("asst_1")
    assert known.run_starts("thread_2", "asst_1", "proj") is None


def test_a_process_that_is_not_alone_knows_nothing_new_and_guesses_nothing() -> None:
    known = _known(alone=False)
    known.assistant_read("asst_1", "proj", "{}")
    known.thread_made("thread_1", "proj", [])
    known.alone = True
    assert known.run_starts("thread_1", "asst_1", "proj") is None
    known.assistant_read("asst_1", "proj", "{}")
    known.thread_made("thread_1", "proj", [])
    known.alone = False
    assert known.run_starts("thread_1", "asst_1", "proj") is None


def test_what_is_known_is_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_threads, "MAX_THREADS", 3)
    monkeypatch.setattr(known_threads, "MAX_CHARS", 10)
    known = _known()
    known.assistant_read("asst_1", "proj", "{}")
    for n in range(4):
        known.thread_made(f"thread_{n}", "proj", [(0, "msg_1", "ab")])
    assert known.run_starts("thread_0", "asst_1", "proj") is None  # past MAX_THREADS
    known.thread_made("thread_big", "proj", [(0, "msg_1", "x" * 11)])  # alone over MAX_CHARS
    assert known.run_starts("thread_big", "asst_1", "proj") is None
    known.message_added(known.adding_message("thread_1"), (0, "msg_2", "y" * 7))  # 9 characters
    assert known.run_starts("thread_2", "asst_1", "proj") is None
    assert known.run_starts("thread_3", "asst_1", "proj") is None
    assert known.run_starts("thread_1", "asst_1", "proj") is not None
    known.thread_made("thread_4", "proj", [(0, "msg_1", "x" * 10)])  # the characters were freed
    assert known.run_starts("thread_4", "asst_1", "proj") is not None


def test_a_guess_stands_only_if_the_read_found_what_was_known() -> None:
    known = _known()
    guess = Known("{}", [(0, "msg_1", "a")])
    assert known.confirmed(guess, "{}", [(0, "msg_1", "a")], None)
    assert not known.confirmed(guess, "{}", [(0, "msg_1", "a"), (0, "msg_2", "b")], None)
    assert not known.confirmed(guess, '{"instructions": "new"}', [(0, "msg_1", "a")], None)
    assert not known.confirmed(guess, "{}", [(0, "msg_1", "a")], "run_1")
    assert (_guesses(known, "right"), _guesses(known, "wrong")) == (1, 3)


async def test_presence_counts_each_process_once(store_url: str) -> None:
    """One per Database that listens (a server process), however many connections it
    listens on; a process whose listening connection was lost is not seen. SQLite is one
    process's."""
    first, second = Database(store_url), Database(store_url)
    listeners = []
    try:
        if first.is_sqlite:
            assert await first.presence() == (True, 0)
            return
        assert await first.presence() == (False, 0)  # not listening: not seen
        listeners.append(await first.listen({"a": lambda _: None}))
        listeners.append(await first.listen({"b": lambda _: None}))
        assert await first.presence() == (True, 0)
        listeners.append(await second.listen({"a": lambda _: None}))
        assert await first.presence() == await second.presence() == (True, 1)
        await listeners.pop(0).close()  # the connection that holds the first's presence

        async def second_alone() -> bool:  # (once the closed connection's backend exits)
            return await second.presence() == (True, 0)

        await _until(second_alone)
        assert await first.presence() == (False, 1)
    finally:
        for listener in listeners:
            await listener.close()
        await first.close()
        await second.close()


async def test_the_watch_guesses_only_while_the_process_is_alone(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_threads, "WATCH_SECONDS", 0.05)
    db, other = Database(store_url), Database(store_url)
    known = KnownThreads(db, Metrics())
    listeners = [await db.listen({"a": lambda _: None})] if not db.is_sqlite else []
    known.start()
    try:
        if db.is_sqlite:
            await asyncio.sleep(0.2)
            assert not known.guessing
            return
        await _until(lambda: known.guessing)
        known.assistant_read("asst_1", "proj", "{}")
        known.thread_made("thread_1", "proj", [])
        listeners.append(await other.listen({"a": lambda _: None}))
        await _until(lambda: not known.guessing)
        await listeners.pop().close()
        await _until(lambda: known.guessing)
        assert known.run_starts("thread_1", "asst_1", "proj") is None  # forgotten meanwhile
        known.thread_made("thread_1", "proj", [])
        assert known.run_starts("thread_1", "asst_1", "proj") is None  # the assistant too
    finally:
        await known.stop()
        for listener in listeners:
            await listener.close()
        await db.close()
        await other.close()


async def _until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Polled: the watch's state has no event to wait on, and a closed connection's backend
    releases its locks soon after, not at once."""
    for _ in range(250):
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in 5 s")
