"""The chat UI in a real browser: streamed text, a code interpreter step with its logs and
image, an upload attached to the message, and the stop button cancelling the run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.support import free_port
from tests.ui.conftest import UI_MODEL, ChainlitApp
from vtai.testing import Call, Echo, Error, Reply, ToolCalls

ANSWER = '[data-step-type="assistant_message"] [role="article"]'


def send(page: Any, text: str) -> None:
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()


def last_answer(page: Any) -> str:
    answers = page.locator(ANSWER)
    return str(answers.last.inner_text()) if answers.count() else ""


def test_answer_streams_into_one_message(page: Any, fake_model: Any, shots: Path) -> None:
    text = "Streaming works: every word arrives on its own, one after another."
    fake_model.script(UI_MODEL, Reply(text, chunk_delay=0.12))
    send(page, "Tell me about streaming")
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not seen or seen[-1] != text):
        current = last_answer(page)
        if current and (not seen or current != seen[-1]):
            seen.append(current)
        time.sleep(0.05)
    page.screenshot(path=shots / "streamed-text.png")
    assert seen[-1] == text
    assert len(seen) >= 4 and all(text.startswith(s) for s in seen)  # grew in place
    assert page.locator(ANSWER).count() == 1


def test_code_step_shows_code_and_logs_and_the_image_once_with_the_answer(
        page: Any, fake_model: Any, shots: Path) -> None:
    code = "for n in range(3):\n    print('square', n * n)"
    fake_model.script(UI_MODEL, ToolCalls([Call("python", {"code": code})]),
                      Reply("The squares are 0, 1 and 4; the chart is above."))
    send(page, "Compute some squares and chart them")
    page.get_by_text("the chart is above").wait_for(timeout=30_000)
    answer = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="the chart is above")
    images = page.locator("img[src*='/project/file/']")
    answer.locator("img[src*='/project/file/']").wait_for(timeout=10_000)
    step = page.get_by_text("Used code_interpreter").first
    step.click()
    page.get_by_text("square 4").wait_for(timeout=10_000)
    assert page.get_by_text("print('square', n * n)").count() >= 1
    page.screenshot(path=shots / "code-step.png")
    images.first.scroll_into_view_if_needed()
    images.first.screenshot(path=shots / "code-step-image.png")
    assert images.count() == 1  # once, in the answer's message, not again in the step
    assert images.first.evaluate("i => i.naturalWidth") == 160
    assert page.locator(ANSWER).count() == 1


def test_files_the_code_writes_can_be_downloaded(page: Any, fake_model: Any,
                                                 shots: Path) -> None:
    code = "open('/mnt/data/squares.csv', 'w').write('n,square')"
    fake_model.script(UI_MODEL, ToolCalls([Call("python", {"code": code})]),
                      Reply("Here is [the table](sandbox:/mnt/data/squares.csv)."))
    send(page, "Write the squares to a file")
    page.get_by_text("Here is the table [1].").wait_for(timeout=30_000)
    answer = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="Here is the table")
    link = answer.get_by_text("squares.csv")
    link.wait_for(timeout=10_000)
    page.screenshot(path=shots / "code-file.png")
    assert "Sources" not in answer.inner_text()
    with page.expect_download(timeout=10_000) as download:
        link.click()
    saved = Path(download.value.path())
    assert saved.read_text() == "made by the code: /mnt/data/squares.csv\n"


def test_upload_is_attached_to_the_message(page: Any, fake_model: Any, ui_server: Any,
                                           chainlit_app: Any, shots: Path,
                                           tmp_path: Path) -> None:
    fake_model.script(UI_MODEL, Echo())
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\nThe launch is on Tuesday.")
    table = tmp_path / "sales.csv"
    table.write_text("month,total\njan,10\n")
    page.locator("#upload-button-input").set_input_files([str(notes), str(table)])
    page.get_by_text("sales.csv").first.wait_for(timeout=10_000)
    page.wait_for_function("!document.querySelector('#chat-submit').disabled")
    send(page, "What is in my files?")
    page.get_by_text("user: What is in my files?").wait_for(timeout=30_000)
    page.screenshot(path=shots / "upload.png")

    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    names = {f.id: f.filename for f in client.files.list().data}
    messages = client.beta.threads.messages.list(page_thread(page), order="asc").data
    assert {(names[a.file_id], a.tools[0].type) for a in messages[0].attachments or []} == {
        ("notes.md", "file_search"), ("sales.csv", "code_interpreter")}


def test_stop_cancels_the_run(page: Any, fake_model: Any, ui_server: Any, chainlit_app: Any,
                              shots: Path) -> None:
    fake_model.script(UI_MODEL, Reply("This answer is long and slow " + "and slower " * 30,
                                      chunk_delay=0.4))
    send(page, "Take your time")
    page.get_by_text("This answer is").wait_for(timeout=30_000)
    page.locator("#stop-button").click()
    page.get_by_text("Stopped: the run is cancelled.").wait_for(timeout=30_000)
    page.screenshot(path=shots / "stopped.png")
    assert page.get_by_text("Task manually stopped.").count() == 0  # one message, ours
    assert page.locator(ANSWER).first.inner_text().startswith("This answer is")
    assert "slower slower slower" not in page.locator(ANSWER).first.inner_text()
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    [run] = client.beta.threads.runs.list(page_thread(page)).data
    assert run.status == "cancelled"


def test_new_chat_starts_a_new_thread_and_the_history_reopens_the_old_one(
        page: Any, fake_model: Any, ui_server: Any, chainlit_app: Any, shots: Path) -> None:
    send(page, "first chat")
    page.get_by_text("You said: first chat").wait_for(timeout=30_000)
    first = page_thread(page)
    new_chat(page)
    page.locator("#welcome-screen").wait_for(timeout=60_000)  # (a new chat, on a busy machine)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)
    send(page, "second chat")
    page.get_by_text("You said: second chat").wait_for(timeout=30_000)
    page.wait_for_url(lambda url: f"/thread/{first}" not in url and "/thread/" in url)
    second = page_thread(page)
    assert second != first
    assert page.locator(ANSWER).count() == 1  # the first chat's answer is not on screen
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    [user, _] = client.beta.threads.messages.list(second, order="asc").data
    assert user.content[0].text.value == "second chat"  # type: ignore[union-attr]
    assert client.beta.threads.retrieve(first).metadata["vtai_ui_title"] == "first chat"

    # The history lists both chats, newest first; the first one reopens on its thread.
    chats = page.locator(f'a[href="/thread/{first}"], a[href="/thread/{second}"]')
    chats.nth(1).wait_for(timeout=30_000)
    assert chats.nth(0).inner_text() == "second chat"
    page.screenshot(path=shots / "history.png")
    page.locator(f'a[href="/thread/{first}"]').click()
    page.get_by_text("You said: first chat").wait_for(timeout=30_000)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)
    send(page, "back to the first")
    page.get_by_text("You said: back to the first").wait_for(timeout=30_000)
    page.screenshot(path=shots / "history-reopened.png")
    assert page_thread(page) == first
    texts = [m.content[0].text.value  # type: ignore[union-attr]
             for m in client.beta.threads.messages.list(first, order="asc").data]
    assert texts == ["first chat", "You said: first chat", "back to the first",
                     "You said: back to the first"]


def new_chat(page: Any) -> None:
    """New Chat, once the answer is over (the chat is idle: the stop button has gone)."""
    page.locator("#stop-button").wait_for(state="detached", timeout=30_000)
    page.locator("#new-chat-button").click()


def page_thread(page: Any) -> str:
    """The thread of the chat the page shows (a chat of the history is its thread)."""
    page.wait_for_url("**/thread/thread_*", timeout=30_000)
    return str(page.url.rsplit("/", 1)[1])


def ui_thread(chainlit_app: Any) -> str | None:
    """The thread of the chat open in the page (the UI saves the ids it uses last)."""
    return saved_ids(chainlit_app).get("thread_id")


def ui_assistant(chainlit_app: Any) -> str | None:
    return saved_ids(chainlit_app).get("assistant_id")


def saved_ids(chainlit_app: Any) -> dict[str, str]:
    [ids] = json.loads((chainlit_app.root / "ui" / "ui.json").read_text()).values()
    return ids  # type: ignore[no-any-return]


def test_file_search_sources_and_clickable_citations(page: Any, fake_model: Any,
                                                     shots: Path, tmp_path: Path) -> None:
    notes = tmp_path / "launch-notes.md"
    notes.write_text("The launch is on Tuesday at noon.")
    fake_model.script(UI_MODEL, ToolCalls([Call("file_search", {"query": "launch day"})]),
                      Reply("The launch is on Tuesday【4:0†launch-notes.md】."))
    page.locator("#upload-button-input").set_input_files([str(notes)])
    page.get_by_text("launch-notes.md").first.wait_for(timeout=10_000)
    page.wait_for_function("!document.querySelector('#chat-submit').disabled")
    send(page, "When is the launch?")
    page.get_by_text("The launch is on Tuesday[1].").wait_for(timeout=30_000)
    answer = page.locator('[data-step-type="assistant_message"]').last
    footnote = answer.locator(".footnote-link")
    footnote.wait_for(timeout=10_000)
    assert footnote.inner_text() == "[1] launch-notes.md"
    assert "Sources" not in answer.inner_text()
    assert page.get_by_text("The launch is on Tuesday at noon.").count() == 0  # not opened
    page.screenshot(path=shots / "file-search.png")

    page.get_by_text("Used file_search").first.click()
    page.get_by_text("launch-notes.md (score 0.90)").wait_for(timeout=10_000)
    page.screenshot(path=shots / "file-search-step.png")

    footnote.click()  # the footnote opens its passage, in place
    answer.locator(".footnote-passage").get_by_text(
        "The launch is on Tuesday at noon.").wait_for(timeout=10_000)
    page.screenshot(path=shots / "citation.png")
    footnote.click()
    answer.locator(".footnote-passage").wait_for(state="detached", timeout=10_000)


def test_function_call_step_shows_arguments_and_output(page: Any, fake_model: Any,
                                                       shots: Path) -> None:
    fake_model.script(UI_MODEL, ToolCalls([Call("get_weather", {"city": "Paris"})]),
                      Reply("It is sunny in Paris."))
    send(page, "Weather in Paris?")
    page.get_by_text("It is sunny in Paris.").wait_for(timeout=30_000)
    page.get_by_text("Used get_weather").first.click()
    page.locator("code.language-json").get_by_text('"city": "Paris"').wait_for(timeout=10_000)
    output = page.get_by_text('"sky": "sunny"').first.inner_text()
    assert json.loads(output) == {"city": "Paris", "temperature": 21, "sky": "sunny"}
    page.wait_for_timeout(500)  # the step finishes opening
    page.screenshot(path=shots / "function-call.png")


def test_settings_create_an_assistant_or_pick_one(page: Any, fake_model: Any,
                                                  chainlit_app: Any, shots: Path) -> None:
    original = ui_assistant(chainlit_app)
    fake_model.script("poet-model", Reply("Roses are red."))
    page.locator("#chat-settings-open-modal").click()
    page.locator("#assistant_id").click()
    page.get_by_role("option", name="New assistant (from the fields below)").click()
    page.locator("#name").fill("Poet")
    page.locator("#model").fill("poet-model")
    page.screenshot(path=shots / "settings.png")
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("Now chatting with Poet (poet-model).").wait_for(timeout=30_000)
    assert ui_assistant(chainlit_app) != original
    send(page, "a poem, please")
    page.get_by_text("Roses are red.").wait_for(timeout=30_000)

    page.locator("#chat-settings-open-modal").click()  # back to the tests' assistant
    page.locator("#assistant_id").click()
    page.get_by_role("option", name=f"VT.ai Assistant ({original})").click()
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text(f"Now chatting with VT.ai Assistant ({UI_MODEL}).").wait_for(timeout=30_000)
    assert ui_assistant(chainlit_app) == original


def test_a_failed_run_reads_as_a_message(page: Any, fake_model: Any, shots: Path) -> None:
    fake_model.script(UI_MODEL, Error(400, "This model does not exist upstream.",
                                      type="invalid_request_error"))
    send(page, "hello?")
    page.get_by_text("The run failed:").wait_for(timeout=30_000)
    assert "This model does not exist upstream." in page.locator("body").inner_text()
    assert "Traceback" not in page.content()
    page.screenshot(path=shots / "failed-run.png")


def test_an_unreachable_server_reads_as_a_message(browser: Any, tmp_path: Path,
                                                  shots: Path) -> None:
    app = ChainlitApp(tmp_path, f"http://127.0.0.1:{free_port()}/v1", UI_MODEL)
    try:
        page = browser.new_page()
        page.goto(app.url)
        page.get_by_text("Cannot start the chat: Could not create the assistant: cannot "
                         "reach the server").wait_for(timeout=30_000)
        assert "Traceback" not in page.content()
        page.screenshot(path=shots / "unreachable.png")
        page.close()
    finally:
        app.stop()


def test_a_run_still_going_is_shown_then_can_be_cancelled(page: Any, fake_model: Any,
                                                          ui_server: Any, chainlit_app: Any,
                                                          shots: Path) -> None:
    """Another client (or a server restart) left a run going on the chat's thread: a new
    message waits for it, showing its answer; Stop cancels it."""
    fake_model.script(UI_MODEL, Reply("An earlier answer, slowly " + "and slowly " * 40,
                                      chunk_delay=0.3))
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    thread_id = ui_thread(chainlit_app)
    assert thread_id
    other = client.beta.threads.runs.create(thread_id, assistant_id=ui_assistant(chainlit_app))
    send(page, "are you there?")
    page.get_by_text("A run of this chat is still going").wait_for(timeout=30_000)
    page.get_by_text("An earlier answer, slowly").wait_for(timeout=30_000)
    page.screenshot(path=shots / "run-still-going.png")
    page.locator("#stop-button").click()
    page.get_by_text("Stopped: the run is cancelled.").wait_for(timeout=30_000)
    assert client.beta.threads.runs.retrieve(other.id, thread_id=thread_id).status \
        == "cancelled"
    assert "slowly and slowly and slowly" not in last_answer(page)
    send(page, "are you there now?")
    page.get_by_text("You said: are you there now?").wait_for(timeout=30_000)
    page.screenshot(path=shots / "run-cancelled.png")


def test_a_run_still_going_is_waited_for(page: Any, fake_model: Any, ui_server: Any,
                                         chainlit_app: Any) -> None:
    fake_model.script(UI_MODEL, Reply("The earlier answer.", chunk_delay=0.2))
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    thread_id = ui_thread(chainlit_app)
    assert thread_id
    client.beta.threads.runs.create(thread_id, assistant_id=ui_assistant(chainlit_app))
    send(page, "and mine?")
    page.get_by_text("The earlier answer.").wait_for(timeout=30_000)
    page.get_by_text("You said: and mine?").wait_for(timeout=30_000)
    assert page.locator(ANSWER).count() == 3  # the notice, that answer, and this one


def test_welcome_screen_names_the_assistant_and_model(page: Any, browser: Any,
                                                      chainlit_app: Any, shots: Path) -> None:
    page = browser.new_page()  # (the fixture's page made the assistant, if none was made)
    page.goto(chainlit_app.url)
    welcome = page.locator("#welcome-screen")
    welcome.get_by_text(f"on {UI_MODEL}").wait_for(timeout=30_000)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)
    page.wait_for_function("getComputedStyle(document.querySelector('#welcome-screen'))"
                           ".opacity === '1'")
    assert "Chatting with VT.ai Assistant on" in welcome.inner_text()
    page.screenshot(path=shots / "welcome.png")
    page.close()


def test_an_uploaded_image_reaches_the_model(page: Any, fake_model: Any,
                                             tmp_path: Path) -> None:
    from tests.ui.stand_in_tools import chart_png

    photo = tmp_path / "photo.png"
    photo.write_bytes(chart_png())
    fake_model.script(UI_MODEL, Reply("I see blue bars."))
    page.locator("#upload-button-input").set_input_files([str(photo)])
    page.locator("img[alt='photo.png']").wait_for(timeout=10_000)
    page.wait_for_function("!document.querySelector('#chat-submit').disabled")
    send(page, "What is in this picture?")
    page.get_by_text("I see blue bars.").wait_for(timeout=30_000)
    [request] = fake_model.requests(UI_MODEL)
    [user] = [m for m in request["messages"] if m["role"] == "user"]
    images = [part["image_url"]["url"] for part in user["content"]
              if isinstance(part, dict) and part.get("type") == "image_url"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")


def test_a_reopened_chat_shows_its_charts_footnotes_and_files(page: Any, fake_model: Any,
                                                              chainlit_app: Any, shots: Path,
                                                              tmp_path: Path) -> None:
    notes = tmp_path / "plan.md"
    notes.write_text("The plan is to ship on Friday.")
    code = "open('/mnt/data/plan.csv', 'w').write('day,ship')"
    fake_model.script(UI_MODEL, ToolCalls([Call("file_search", {"query": "plan"}),
                                           Call("python", {"code": code})]),
                      Reply("We ship on Friday【4:0†plan.md】; the chart and "
                            "[the table](sandbox:/mnt/data/plan.csv) are here."))
    page.locator("#upload-button-input").set_input_files([str(notes)])
    page.get_by_text("plan.md").first.wait_for(timeout=10_000)
    page.wait_for_function("!document.querySelector('#chat-submit').disabled")
    send(page, "What is the plan?")
    page.get_by_text("We ship on Friday[1]").wait_for(timeout=30_000)
    first = page_thread(page)
    new_chat(page)
    page.locator("#welcome-screen").wait_for(timeout=60_000)  # (a new chat, on a busy machine)
    page.locator("#chat-settings-open-modal").wait_for(timeout=30_000)

    page.locator(f'a[href="/thread/{first}"]').click()
    answer = page.locator('[data-step-type="assistant_message"]').filter(
        has_text="We ship on Friday")
    answer.wait_for(timeout=30_000)
    answer.locator("img[src^='data:image/png']").wait_for(timeout=10_000)  # the chart
    footnote = answer.locator(".footnote-link")
    assert footnote.inner_text() == "[1] plan.md"
    footnote.click()
    answer.locator(".footnote-passage").get_by_text(
        "The plan is to ship on Friday.").wait_for(timeout=10_000)
    answer.get_by_text("plan.csv").wait_for(timeout=10_000)
    page.screenshot(path=shots / "history-reopened-elements.png")
    with page.expect_download(timeout=10_000) as download:
        answer.get_by_text("plan.csv").click()
    assert Path(download.value.path()).read_text() == "made by the code: /mnt/data/plan.csv\n"


def test_a_chat_deleted_from_the_history_is_gone_from_the_server(
        page: Any, ui_server: Any, chainlit_app: Any, shots: Path) -> None:
    send(page, "forget this chat")
    page.get_by_text("You said: forget this chat").wait_for(timeout=30_000)
    thread_id = page_thread(page)
    item = page.locator(f'a[href="/thread/{thread_id}"]')
    item.wait_for(timeout=30_000)
    item.hover()
    item.locator("#thread-options").click()  # its menu
    page.get_by_role("menuitem").filter(has_text="Delete").click()
    page.get_by_role("button", name="Confirm").click()
    item.wait_for(state="detached", timeout=30_000)
    page.screenshot(path=shots / "history-deleted.png")
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread_id)  # type: ignore[arg-type]


def test_the_saved_assistant_gets_the_functions_asked_for(browser: Any, ui_server: Any,
                                                          tmp_path: Path) -> None:
    """`vtai ui --functions` on an assistant saved before without them: it gets them, and the
    chat says so."""
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    saved = client.beta.assistants.create(model=UI_MODEL, name="Saved before")
    app = ChainlitApp(tmp_path, ui_server.base_url, UI_MODEL,
                      env={"VTAI_UI_ASSISTANT_ID": saved.id})
    try:
        page = browser.new_page()
        page.goto(app.url)
        page.get_by_text("The assistant now has the functions asked for: get_weather.").wait_for(
            timeout=30_000)
        page.close()
    finally:
        app.stop()
    [tool] = client.beta.assistants.retrieve(saved.id).tools
    assert tool.type == "function" and tool.function.name == "get_weather"
