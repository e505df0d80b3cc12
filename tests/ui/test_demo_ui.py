"""The chat UI on `vtai serve --fake-model`, as a newcomer without a model tries it: the demo
model uses the real built-in tools on plain requests (a chart, a search of an uploaded file, a
function)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.ui.conftest import ChainlitApp
from tests.ui.test_chat_ui import send

ANSWERS = '[data-step-type="assistant_message"]'


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainlitApp]:
    with ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("demo-server"), "sqlite", None,
                              args=("--fake-model",))
        app = ChainlitApp(tmp_path_factory.mktemp("demo-ui"), server.base_url, "anything")
        stack.callback(app.stop)
        yield app


def test_a_newcomer_tries_every_tool_on_the_demo_model(browser: Any, demo_app: ChainlitApp,
                                                       shots: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(demo_app.url)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)

    send(page, "Chart the squares, please")
    chart_answer = page.locator(ANSWERS).filter(has_text="I ran the code")
    chart_answer.wait_for(timeout=90_000)
    chart_answer.locator("img[src*='/project/file/']").wait_for(timeout=30_000)
    page.screenshot(path=shots / "demo-chart.png")
    assert page.locator("img[src*='/project/file/']").count() == 1  # once, in the answer
    assert page.locator(".positive-feedback-off").first.is_hidden()  # (no feedback kept)

    send(page, "What is the weather in Paris?")
    page.get_by_text("`get_weather` answered", exact=False).or_(
        page.get_by_text("get_weather answered")).first.wait_for(timeout=60_000)

    notes = tmp_path / "launch-plan.md"
    notes.write_text("# Launch plan\n\nThe launch is on Tuesday at noon, in Lisbon.")
    page.locator("#upload-button-input").set_input_files([str(notes)])
    page.get_by_text("launch-plan.md").first.wait_for(timeout=10_000)
    page.wait_for_function("!document.querySelector('#chat-submit').disabled")
    send(page, "When is the launch? Search my files.")
    answer = page.locator(ANSWERS).filter(has_text="From your files")
    answer.wait_for(timeout=90_000)
    footnote = answer.locator(".footnote-link")
    footnote.wait_for(timeout=30_000)
    assert footnote.inner_text() == "[1] launch-plan.md"
    assert "“Launch plan The launch is on Tuesday" in answer.inner_text()
    footnote.click()
    answer.locator(".footnote-passage").get_by_text("Tuesday at noon", exact=False).wait_for(
        timeout=10_000)
    page.screenshot(path=shots / "demo-search.png")
    page.close()
