"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
