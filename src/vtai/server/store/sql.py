"""Plain SQL statements, and the connection both drivers give the store.

The statements a run makes many times (``Sql``) are written by hand and handed to the driver
as they are: SQLAlchemy's statement building, caching and result processing cost several
times more CPU than SQLite's own work on them. The rest of the store builds its statements
with SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import engine as sa_engine
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql.base import Executable

T = TypeVar("T")

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class Sql:
    """A statement in plain SQL with ``:name`` parameters, as sqlite3 takes them; asyncpg
    gets the same text with ``$1, $2, ...`` in their place (the only change made to it)."""

    def __init__(self, text: str, returns_rows: bool | None = None) -> None:
        """``returns_rows``: whether the statement gives rows, when its first word does not
        say (a ``WITH`` whose last part is a ``SELECT``)."""
        self.sqlite = text
        self.names: list[str] = []
        for name in _PARAM.findall(text):
            if name not in self.names:
                self.names.append(name)
        self.postgres = _PARAM.sub(lambda m: f"${self.names.index(m[1]) + 1}", text)
        upper = text.lstrip().upper()
        self.returns_rows = returns_rows if returns_rows is not None else \
            upper.startswith(("SELECT", "VALUES")) or " RETURNING " in upper

    def positional(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)


class Rows(NamedTuple):
    rows: list[Any]  # tuples (or rows that index like them)
    rowcount: int

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Connection(Protocol):
    """What the store's queries use: SQLAlchemy statements, and ``Sql`` run by the driver."""

    async def execute(self, statement: Executable, parameters: Any = None
                      ) -> CursorResult[Any]: ...

    async def run_sync(self, fn: Callable[[sa_engine.Connection], T]) -> T: ...

    async def sql(self, statement: Sql, params: dict[str, Any] | None = None) -> Rows: ...

    async def sql_many(self, statement: Sql, rows: list[dict[str, Any]]) -> None: ...
