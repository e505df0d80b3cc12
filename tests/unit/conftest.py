"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_postgres
from tests.support import postgres_database
from vtai.server.store.db import Database
from vtai.testing import FakeModelServer


# A module's own fake model rather than the session-wide one in tests/conftest.py: these tests
# reset it freely.
@pytest.fixture(scope="module")
def fm_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as fm:
        yield fm


@pytest.fixture
def fm(fm_server: FakeModelServer) -> FakeModelServer:
    """The module's fake model, with no scripts and no recorded requests."""
    fm_server.reset()
    return fm_server


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/vtai.db"
        return
    require_postgres()
    with postgres_database() as pg_url:
        yield pg_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Database]:
    """A Database on ``store_url`` with the server's tables."""
    database = Database(store_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()
