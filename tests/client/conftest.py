"""Client-module tests: the official SDK's AsyncOpenAI against a real server whose model is
the scriptable fake. One server on SQLite: the client does not depend on the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import start_server
from tests.support import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: object
           ) -> Iterator[ServerProcess]:
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("client"), "sqlite", fake_model)


@pytest.fixture(scope="session")
def aclient(server: ServerProcess) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def sync_client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
