"""The writes a run (and a thread) makes on its way, each written out whole.

On PostgreSQL each is one statement, in one round trip, atomic by itself: data-modifying CTEs,
the rows of a variable number of objects passed as arrays (``unnest``). A transaction would
take BEGIN, each statement and COMMIT. On SQLite each is a write transaction of plain
statements (a statement there costs microseconds). The statements are written here as they
run: none is made by rewriting another.

A run's status changes by compare-and-set (``RunWrite``): the write happens only if the run is
still in the status its writer read, and what is written with it happens only if it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vtai.server.store.db import Database
from vtai.server.store.postgres import DURABLE, turn_lock
from vtai.server.store.sql import Connection, Sql
from vtai.server.store.tables import ACTIVE_STATUSES


class _Unchanged(Exception):
    """A compare-and-set changed nothing: its transaction is rolled back."""


@dataclass(frozen=True)
class RunWrite:
    """A run's new JSON ``data`` in ``status``, written only if its status is still
    ``expected``. ``lease``: the worker's claim is kept, set (``worker_id`` until
    ``lease_expires_at``), or cleared (nothing is left to execute)."""

    id: str
    expected: str
    status: str
    data: str
    lease: Literal["keep", "set", "clear"] = "keep"
    worker_id: str | None = None
    lease_expires_at: int | None = None

    def params(self) -> dict[str, Any]:
        return {"id": self.id, "expected": self.expected, "status": self.status,
                "data": self.data, "lease": self.lease, "worker_id": self.worker_id,
                "lease_expires_at": self.lease_expires_at}


@dataclass(frozen=True)
class RunRow:
    """A run's step, or a message, as it is inserted."""

    id: str
    project_id: str
    created_at: int
    data: str
    thread_id: str
    run_id: str | None

    def params(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}id": self.id, f"{prefix}project_id": self.project_id,
                f"{prefix}created_at": self.created_at, f"{prefix}data": self.data,
                f"{prefix}thread_id": self.thread_id, f"{prefix}run_id": self.run_id}


# ------------------------------------------------------------------------------ statements

_SET_RUN = (
    "UPDATE runs SET data = :data, status = :status, "
    "worker_id = CASE CAST(:lease AS text) WHEN 'keep' THEN worker_id "
    "WHEN 'set' THEN CAST(:worker_id AS varchar) ELSE NULL END, "
    "lease_expires_at = CASE CAST(:lease AS text) WHEN 'keep' THEN lease_expires_at "
    "WHEN 'set' THEN CAST(:lease_expires_at AS bigint) ELSE NULL END "
    "WHERE id = :id AND status = :expected")
MOVE_RUN = Sql(_SET_RUN)

_STEP_COLUMNS = "(id, project_id, created_at, data, thread_id, run_id)"
INSERT_STEP = Sql(f"INSERT INTO run_steps {_STEP_COLUMNS} VALUES "
                  "(:id, :project_id, :created_at, :data, :thread_id, :run_id)")
INSERT_MESSAGE = Sql(f"INSERT INTO messages {_STEP_COLUMNS} VALUES "
                     "(:id, :project_id, :created_at, :data, :thread_id, :run_id)")
SAVE_STEP = Sql("UPDATE run_steps SET data = :data WHERE id = :id")
SAVE_MESSAGE = Sql("UPDATE messages SET data = :data WHERE id = :id")

# PostgreSQL: the run's move, and a message with its step inserted if the move happened.
# (The values are cast: PostgreSQL does not infer a SELECT's parameter types.)
_ROW_VALUES = ("CAST(:{p}id AS varchar), CAST(:{p}project_id AS varchar), "
               "CAST(:{p}created_at AS bigint), CAST(:{p}data AS text), "
               "CAST(:{p}thread_id AS varchar), CAST(:{p}run_id AS varchar)")
_START_WITH_MESSAGE_PG = Sql(
    f"WITH moved AS ({_SET_RUN} RETURNING 1), "
    f"step AS (INSERT INTO run_steps {_STEP_COLUMNS} SELECT {_ROW_VALUES.format(p='s_')} "
    "WHERE EXISTS (SELECT 1 FROM moved) RETURNING 1), "
    f"message AS (INSERT INTO messages {_STEP_COLUMNS} SELECT {_ROW_VALUES.format(p='m_')} "
    "WHERE EXISTS (SELECT 1 FROM moved) RETURNING 1) "
    "SELECT count(*) FROM moved")
_INSERT_WITH_MESSAGE_PG = Sql(
    f"WITH step AS (INSERT INTO run_steps {_STEP_COLUMNS} VALUES (:s_id, :s_project_id, "
    ":s_created_at, :s_data, :s_thread_id, :s_run_id) RETURNING 1) "
    f"INSERT INTO messages {_STEP_COLUMNS} VALUES (:m_id, :m_project_id, :m_created_at, "
    ":m_data, :m_thread_id, :m_run_id)")

# PostgreSQL: steps' and messages' new data, by id, as arrays; with the run's move or alone.
_SAVE_STEPS = ("UPDATE run_steps AS t SET data = u.data FROM unnest(CAST(:step_ids AS text[]), "
               "CAST(:step_data AS text[])) AS u (id, data) WHERE t.id = u.id")
_SAVE_MESSAGES = ("UPDATE messages AS t SET data = u.data FROM unnest(CAST(:message_ids AS "
                  "text[]), CAST(:message_data AS text[])) AS u (id, data) WHERE t.id = u.id")
_SAVE_WITH_MOVE_PG = Sql(
    f"WITH moved AS ({_SET_RUN} RETURNING 1), "
    f"steps AS ({_SAVE_STEPS} AND EXISTS (SELECT 1 FROM moved) RETURNING 1), "
    f"messages AS ({_SAVE_MESSAGES} AND EXISTS (SELECT 1 FROM moved) RETURNING 1) "
    f"SELECT (SELECT count(*) FROM moved), {DURABLE}")
_SAVE_PG = Sql(
    f"WITH steps AS ({_SAVE_STEPS} RETURNING 1), messages AS ({_SAVE_MESSAGES} RETURNING 1) "
    f"SELECT {DURABLE}")

# A new thread and its first messages (PostgreSQL: one durable statement).
INSERT_THREAD = Sql("INSERT INTO threads (id, project_id, created_at, data) "
                    "VALUES (:id, :project_id, :created_at, :data)")
_INSERT_THREAD_PG = Sql(
    "WITH thread AS (INSERT INTO threads (id, project_id, created_at, data) "
    "VALUES (:id, :project_id, :created_at, :data) RETURNING 1), "
    f"messages AS (INSERT INTO messages {_STEP_COLUMNS} SELECT u.id, "
    "CAST(:project_id AS varchar), u.created_at, u.data, CAST(:id AS varchar), NULL "
    "FROM unnest(CAST(:message_ids AS text[]), "
    "CAST(:message_created AS bigint[]), CAST(:message_data AS text[])) "
    "AS u (id, created_at, data) RETURNING 1) "
    f"SELECT (SELECT count(*) FROM thread), {DURABLE}")

# A new run, stored only if its thread is in the project and has no active run (which the
# unique index ix_runs_active_thread ensures as well).
_RUN_COLUMNS = ("(id, project_id, created_at, data, thread_id, status, worker_id, "
                "lease_expires_at)")
_RUN_VALUES = ("CAST(:id AS varchar), CAST(:project_id AS varchar), "
               "CAST(:created_at AS bigint), CAST(:data AS text), "
               "CAST(:thread_id AS varchar), CAST(:status AS varchar), "
               "CAST(:worker_id AS varchar), CAST(:lease_expires_at AS bigint)")
_RUN_CHECKS = ("EXISTS (SELECT 1 FROM threads AS t WHERE t.id = :thread_id "
               "AND t.project_id = :project_id) AND NOT EXISTS (SELECT 1 FROM runs AS r "
               f"WHERE r.thread_id = :thread_id AND r.status IN ({ACTIVE_STATUSES}))")
INSERT_RUN = Sql(f"INSERT INTO runs {_RUN_COLUMNS} SELECT {_RUN_VALUES} WHERE {_RUN_CHECKS}")
# PostgreSQL, in one durable statement: after the thread's turn lock (Database.write(turn)),
# and waking the other processes' workers at commit, or not.
_IN_TURN = ("WITH turn AS (SELECT pg_advisory_xact_lock(:turn_lock), {durable}{notify}) "
            f"INSERT INTO runs {_RUN_COLUMNS} SELECT {_RUN_VALUES} FROM turn "
            f"WHERE {_RUN_CHECKS}")
_INSERT_RUN_IN_TURN_PG = Sql(_IN_TURN.format(durable=DURABLE, notify=""))
_INSERT_RUN_IN_TURN_NOTIFYING_PG = Sql(_IN_TURN.format(
    durable=DURABLE, notify=", pg_notify(:channel, '')"))


# ------------------------------------------------------------------------------ writes


async def move_run(conn: Connection, write: RunWrite) -> bool:
    """The run's move in ``conn``'s transaction: whether it happened."""
    return bool((await conn.sql(MOVE_RUN, write.params())).rowcount)


async def move_run_now(db: Database, write: RunWrite) -> bool:
    """The run's move on its own, not waiting for the WAL flush (a later durable write makes
    it durable too): whether it happened."""
    return bool((await db.run(MOVE_RUN, write.params())).rowcount)


async def start_with_message(db: Database, write: RunWrite, step: RunRow,
                             message: RunRow) -> bool:
    """The run's move, and a message and its step stored with it if it happened (not
    waiting for the WAL flush): whether it did."""
    if db.sqlite is None:
        params = {**write.params(), **step.params("s_"), **message.params("m_")}
        return bool((await db.run(_START_WITH_MESSAGE_PG, params)).rows[0][0])
    try:
        async with db.write() as conn:
            if not await move_run(conn, write):
                raise _Unchanged
            await conn.sql(INSERT_STEP, step.params())
            await conn.sql(INSERT_MESSAGE, message.params())
    except _Unchanged:
        return False
    return True


async def insert_message(db: Database, step: RunRow, message: RunRow) -> None:
    """A message and its step, not waiting for the WAL flush."""
    if db.sqlite is None:
        await db.run(_INSERT_WITH_MESSAGE_PG, {**step.params("s_"), **message.params("m_")})
        return
    async with db.write() as conn:
        await conn.sql(INSERT_STEP, step.params())
        await conn.sql(INSERT_MESSAGE, message.params())


async def save(db: Database, write: RunWrite | None, steps: dict[str, str],
               messages: dict[str, str]) -> bool:
    """Steps' and messages' new JSON by id, with the run's move if ``write`` (then only if
    the move happens), durably: whether the move happened (True without one)."""
    if db.sqlite is None:
        params = {"step_ids": list(steps), "step_data": list(steps.values()),
                  "message_ids": list(messages), "message_data": list(messages.values())}
        if write is None:
            await db.run(_SAVE_PG, params)
            return True
        return bool((await db.run(_SAVE_WITH_MOVE_PG, {**params, **write.params()})
                     ).rows[0][0])
    try:
        async with db.write() as conn:
            if write is not None and not await move_run(conn, write):
                raise _Unchanged
            for step_id, data in steps.items():
                await conn.sql(SAVE_STEP, {"id": step_id, "data": data})
            for message_id, data in messages.items():
                await conn.sql(SAVE_MESSAGE, {"id": message_id, "data": data})
    except _Unchanged:
        return False
    return True


async def insert_thread(db: Database, thread: dict[str, Any], messages: list[RunRow]) -> None:
    """A new thread (``id``, ``project_id``, ``created_at``, ``data``) and its first
    messages, durably."""
    if db.sqlite is None:
        await db.run(_INSERT_THREAD_PG, {
            **thread, "message_ids": [m.id for m in messages],
            "message_created": [m.created_at for m in messages],
            "message_data": [m.data for m in messages]})
        return
    async with db.write() as conn:
        await conn.sql(INSERT_THREAD, thread)
        for message in messages:
            await conn.sql(INSERT_MESSAGE, message.params())


def thread_turn(thread_id: str) -> str:
    """The ``Database.write`` turn of the writes that depend on a thread's active run:
    starting a run on the thread, and adding a message to it."""
    return f"runs of {thread_id}"


async def insert_run_in(conn: Connection, run: dict[str, Any]) -> bool:
    """A new run (``run``: its columns) in ``conn``'s transaction, which holds its thread's
    turn: whether it was stored (its thread is in the project and had no active run)."""
    return bool((await conn.sql(INSERT_RUN, run)).rowcount)


async def insert_run(db: Database, run: dict[str, Any], notify: str | None) -> bool:
    """A new run in one durable write in its thread's turn (after any transaction of the same
    turn), notifying ``notify`` at commit if given: whether it was stored. On PostgreSQL
    the statement takes the turn's lock first; its checks read the rows as they were when it
    began, before the lock was granted, so what they protect is also a constraint (of two
    such writes that both pass them, one then fails on it)."""
    if db.sqlite is not None:
        async with db.write() as conn:
            return await insert_run_in(conn, run)
    params = {**run, "turn_lock": turn_lock(thread_turn(run["thread_id"]))}
    if notify is None:
        return bool((await db.run(_INSERT_RUN_IN_TURN_PG, params)).rowcount)
    return bool((await db.run(_INSERT_RUN_IN_TURN_NOTIFYING_PG,
                              {**params, "channel": notify})).rowcount)
