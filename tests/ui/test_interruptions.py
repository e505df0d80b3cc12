"""The chat UI and `vtai chat` when the server dies mid-answer and comes back: the answer
resumes (the server keeps the run's events) and ends once; a server that stays away ends the
answer cleanly with a readable message, and the chat stays usable."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from openai import OpenAI

from tests.ui.conftest import UI_MODEL, ChainlitApp, StandInServer
from tests.ui.test_chat_ui import ANSWER, send
from vtai.testing import Reply

SLOW = "This answer takes its time, " + "word by word " * 12 + "and ends here."
# The page shows the message still streaming with this cursor; it must not stay.
STREAMING_DOT = ".loading-cursor"


@pytest.fixture(scope="module")
def fragile_server(tmp_path_factory: pytest.TempPathFactory, fake_model: Any
                   ) -> Iterator[StandInServer]:
    """A server of its own (the tests kill it), whose runs are taken up again 2 s after
    their process dies."""
    server = StandInServer(tmp_path_factory.mktemp("fragile-server"), {
        "VTAI_UPSTREAM_BASE_URL": fake_model.base_url, "VTAI_UPSTREAM_API_KEY": "fake",
        "VTAI_UPSTREAM_MAX_RETRIES": "0", "VTAI_RUN_LEASE_SECONDS": "2"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fragile_app(tmp_path_factory: pytest.TempPathFactory, fragile_server: StandInServer
                ) -> Iterator[ChainlitApp]:
    app = ChainlitApp(tmp_path_factory.mktemp("fragile-app"), fragile_server.base_url,
                      UI_MODEL, env={"VTAI_UI_RECONNECT_SECONDS": "25"})
    yield app
    app.stop()


def kill(server: StandInServer) -> None:
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()


def open_chat(browser: Any, app: ChainlitApp) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(app.url)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)
    return page


def test_ui_resumes_the_answer_after_a_server_restart(browser: Any, fake_model: Any,
                                                      fragile_server: StandInServer,
                                                      fragile_app: ChainlitApp,
                                                      shots: Path) -> None:
    # The run's model call is made again by the restarted server (the first one died with
    # its process): both times the same slow answer.
    fake_model.script(UI_MODEL, Reply(SLOW, chunk_delay=0.15), Reply(SLOW, chunk_delay=0.05))
    page = open_chat(browser, fragile_app)
    send(page, "Take your time")
    page.get_by_text("This answer takes its time").wait_for(timeout=30_000)
    page.locator(STREAMING_DOT).wait_for(timeout=10_000)  # (still typing)
    kill(fragile_server)
    page.get_by_text("Lost the connection to the server").wait_for(timeout=30_000)
    page.screenshot(path=shots / "server-lost.png")
    fragile_server.start()
    page.get_by_text("and ends here.").wait_for(timeout=60_000)
    page.get_by_text("Lost the connection to the server").wait_for(state="detached",
                                                                    timeout=10_000)
    page.locator(STREAMING_DOT).wait_for(state="detached", timeout=10_000)
    page.screenshot(path=shots / "server-back.png")
    assert page.locator(ANSWER).count() == 1  # the half answer made way for the whole one
    assert page.locator(ANSWER).first.inner_text() == SLOW
    assert "Something went wrong" not in page.locator("body").inner_text()
    page.close()


def test_ui_ends_the_answer_when_the_server_stays_away(browser: Any, fake_model: Any,
                                                       fragile_server: StandInServer,
                                                       fragile_app: ChainlitApp,
                                                       shots: Path) -> None:
    # The restarted server writes that run's answer again, then answers the next message.
    fake_model.script(UI_MODEL, Reply(SLOW, chunk_delay=0.15),
                      Reply("The first answer, written again."), Reply("Back again."))
    page = open_chat(browser, fragile_app)
    send(page, "Take your time")
    page.get_by_text("This answer takes its time").wait_for(timeout=30_000)
    page.locator(STREAMING_DOT).wait_for(timeout=10_000)  # (still typing)
    kill(fragile_server)
    page.get_by_text("did not come back within").wait_for(timeout=60_000)
    page.locator(STREAMING_DOT).wait_for(state="detached", timeout=10_000)
    page.screenshot(path=shots / "server-gone.png")
    body = page.locator("body").inner_text()
    assert "RemoteProtocolError" not in body and "Traceback" not in body
    assert page.locator(ANSWER).first.inner_text().startswith("This answer takes its time")

    fragile_server.start()  # the chat goes on once the server is back
    send(page, "Still there?")
    page.get_by_text("The first answer, written again.").wait_for(timeout=60_000)
    page.get_by_text("Back again.").wait_for(timeout=60_000)
    page.screenshot(path=shots / "server-back-later.png")
    answers = page.locator(ANSWER).all_inner_texts()
    assert answers.index("The first answer, written again.") < answers.index("Back again.")
    page.close()


def test_terminal_chat_resumes_after_a_server_restart(fake_model: Any,
                                                      fragile_server: StandInServer,
                                                      tmp_path: Path) -> None:
    client = OpenAI(base_url=fragile_server.base_url, api_key="unused")
    model = "terminal-restart"
    fake_model.script(model, Reply(SLOW, chunk_delay=0.15), Reply(SLOW, chunk_delay=0.05),
                      Reply("Still here."))
    assistant = client.beta.assistants.create(model=model)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
    env.pop("PYTEST_CURRENT_TEST", None)
    child = pexpect.spawn(sys.executable, ["-m", "vtai.cli", "chat", "--base-url",
                                           fragile_server.base_url, "--assistant",
                                           assistant.id, "--data-dir", str(tmp_path)],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 100))
    child.expect("you>")
    child.sendline("take your time")
    child.expect("word by word")
    kill(fragile_server)
    child.expect("Lost the connection to the server")
    fragile_server.start()
    child.expect("Reconnected")
    child.expect("and ends here.")
    child.expect("you>")
    assert "Traceback" not in (child.before or "")
    child.sendline("still there?")
    child.expect("Still here.")
    child.expect("you>")
    child.sendeof()
    child.expect(pexpect.EOF)
    assert not re.search(r"Traceback|Error\(", child.before or "")


def test_a_chat_stays_on_its_thread_when_the_ui_restarts(browser: Any, fake_model: Any,
                                                         fragile_server: StandInServer,
                                                         tmp_path: Path, shots: Path) -> None:
    if fragile_server.proc is None or fragile_server.proc.poll() is not None:
        fragile_server.start()
    app = ChainlitApp(tmp_path, fragile_server.base_url, UI_MODEL)
    try:
        page = open_chat(browser, app)
        send(page, "remember me")
        page.get_by_text("You said: remember me").wait_for(timeout=30_000)
        page.wait_for_url("**/thread/thread_*", timeout=30_000)
        thread_id = page.url.rsplit("/", 1)[1]
        app.stop()
        app = ChainlitApp(tmp_path, fragile_server.base_url, UI_MODEL, port=app.port)
        # The page reconnects by itself, on the same chat.
        deadline = time.monotonic() + 60
        while f"resuming the chat of {thread_id}" not in app.log():
            assert time.monotonic() < deadline, app.log()
            page.wait_for_timeout(200)
        send(page, "still me?")
        page.get_by_text("You said: still me?").wait_for(timeout=30_000)
        page.screenshot(path=shots / "ui-restarted.png")
        client = OpenAI(base_url=fragile_server.base_url, api_key="unused")
        texts = [m.content[0].text.value  # type: ignore[union-attr]
                 for m in client.beta.threads.messages.list(thread_id, order="asc").data]
        assert texts == ["remember me", "You said: remember me", "still me?",
                         "You said: still me?"]
        assert page.get_by_text("You said: remember me").count() == 1  # shown once
        page.locator(f'a[href="/thread/{thread_id}"]').wait_for(timeout=30_000)  # history
        page.close()
    finally:
        app.stop()
