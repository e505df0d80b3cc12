"""UI tests: a real server (fake model, stand-in code interpreter), the Chainlit app started
by `vtai ui`, and Debian's Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def _chromium_missing() -> str | None:
    """Why Debian's chromium is not there (scripts/test installs it), if it is not."""
    if CHROMIUM.exists():
        return None
    return f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: while Playwright's sync API is open, the thread counts as running an
    event loop, and the suite's async tests could not run."""
    problem = _chromium_missing()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install playwright)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"UI tests are required in CI: {problem}")
        pytest.skip(f"UI tests need Chromium and Playwright: {problem}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class StandInServer(ServerProcess):
    """`vtai serve` whose built-in tools are the stand-ins of stand_in_tools.py."""

    def start(self, timeout: float = 30.0) -> StandInServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.python, "-m", "tests.ui.stand_in_tools", "serve", "--port",
             str(self.port), "--data-dir", str(self.data_dir)],
            cwd=REPO, env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        _wait_until_up(self.proc, f"http://127.0.0.1:{self.port}/healthz", timeout, self.log)
        return self


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, timeout: float,
                   log: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start:\n{log()}")


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, fake_model: Any
              ) -> Iterator[ServerProcess]:
    server = StandInServer(tmp_path_factory.mktemp("ui-server"), {
        "VTAI_UPSTREAM_BASE_URL": fake_model.base_url, "VTAI_UPSTREAM_API_KEY": "fake",
        "VTAI_UPSTREAM_MAX_RETRIES": "0"})
    server.start()
    yield server
    server.stop()


class ChainlitApp:
    def __init__(self, root: Path, base_url: str, model: str,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = root
        self.log_path = root / "ui.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vtai.cli", "ui", "--port", str(self.port), "--base-url",
             base_url, "--model", model, "--data-dir", str(root),
             "--functions", "tests.ui.ui_functions"],
            cwd=root, env={**{k: v for k, v in os.environ.items()
                              if k != "PYTEST_CURRENT_TEST"},
                           "PYTHONPATH": os.pathsep.join(
                               p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
                           **(env or {})},
            stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        _wait_until_up(self.proc, self.url, 60, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


UI_MODEL = "ui-model"  # the model of the assistant the UI creates; tests script its replies


@pytest.fixture(scope="session")
def chainlit_app(tmp_path_factory: pytest.TempPathFactory, ui_server: ServerProcess
                 ) -> Iterator[ChainlitApp]:
    app = ChainlitApp(tmp_path_factory.mktemp("ui-app"), ui_server.base_url, UI_MODEL)
    yield app
    app.stop()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (under the test run's temporary directory)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser: Any, chainlit_app: ChainlitApp, fake_model: Any) -> Iterator[Any]:
    """A fresh chat: a new browser context on the UI, offline except for this machine."""
    fake_model.reset()
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    blocked: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.goto(chainlit_app.url)
    # The settings button appears once on_chat_start has run: the chat session is ready.
    try:
        page.locator("#chat-settings-open-modal").wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=chainlit_app.root / "page-not-ready.png")
        (chainlit_app.root / "page-not-ready.txt").write_text(
            page.url + "\n" + page.content())
        raise
    yield page
    context.close()
