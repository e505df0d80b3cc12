"""`vtai chat` in a pseudo-terminal: streamed answers, a code step's panel, /file, /new, Ctrl-C
and /exit, against the same server as the browser tests."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pexpect
import pytest
from openai import OpenAI

from tests.api.runs_support import scripted_assistant
from tests.conftest import start_server
from vtai.testing import Call, Echo, Reply, ToolCalls

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def spawn_chat(server: Any, assistant_id: str | None, data_dir: Path, *args: str
               ) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PYTEST_CURRENT_TEST", None)
    chosen = ["--assistant", assistant_id] if assistant_id else []
    child = pexpect.spawn(sys.executable, ["-m", "vtai.cli", "chat", "--base-url",
                                           server.base_url, *chosen,
                                           "--data-dir", str(data_dir), *args],
                          env=env, encoding="utf-8", timeout=30, dimensions=(40, 100))
    child.expect("you>")
    return child


def test_chat_streams_runs_code_attaches_and_starts_over(ui_server: Any, fake_model: Any,
                                                         tmp_path: Path) -> None:
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    assistant, _ = scripted_assistant(
        client, fake_model, Reply("Hello from the terminal, word by word.", chunk_delay=0.05),
        ToolCalls([Call("python", {"code": "print(sum(range(10)))"})]),
        Reply("The sum is 45."), Echo(), tools=[{"type": "code_interpreter"}])
    child = spawn_chat(ui_server, assistant.id, tmp_path)

    child.sendline("hi")
    child.expect("Hello from the terminal, word by word.")
    child.expect("you>")

    child.logfile_read = screen = io.StringIO()
    child.sendline("add up 0..9")
    child.expect("you>")
    panel = ANSI.sub("", screen.getvalue())
    assert "The sum is 45." in panel
    saved = re.search(r"image saved to (\S+\.png)", panel)
    assert saved and Path(saved.group(1)).read_bytes().startswith(b"\x89PNG")
    assert "code_interpreter" in panel and "print(sum(range(10)))" in panel
    assert "\n45\n" in panel.replace("│", "\n").replace(" ", "")  # the logs, in the panel

    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk")
    child.sendline(f"/file {notes}")
    child.expect(r"Attached notes.txt \(file_search\)")
    child.expect("you>")
    child.sendline("read it")
    child.expect("user: read it")
    child.expect("you>")
    thread_id = _saved_thread(tmp_path)
    [user] = [m for m in client.beta.threads.messages.list(thread_id).data
              if m.role == "user" and m.attachments]
    assert user.attachments[0].tools[0].type == "file_search"  # type: ignore[index]

    child.sendline("/new")
    child.expect(r"New thread (thread_\w+)")
    assert child.match.group(1) != thread_id
    child.expect("you>")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(ui_server: Any, fake_model: Any,
                                                      tmp_path: Path) -> None:
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    assistant, _ = scripted_assistant(client, fake_model,
                                      Reply("slow " * 40, chunk_delay=0.3), Reply("Back."))
    child = spawn_chat(ui_server, assistant.id, tmp_path)
    child.sendline("talk slowly")
    child.expect("slow slow")
    child.sendintr()
    child.expect("Stopped: the run is cancelled.")
    child.expect("you>")
    [run] = client.beta.threads.runs.list(_saved_thread(tmp_path)).data
    for _ in range(50):
        if run.status == "cancelled":
            break
        child.expect(pexpect.TIMEOUT, timeout=0.1)
        run = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    assert run.status == "cancelled"
    child.sendline("and now?")
    child.expect("Back.")
    child.sendeof()
    child.expect(pexpect.EOF)


def _saved_thread(data_dir: Path) -> str:
    [ids] = json.loads((data_dir / "chat.json").read_text()).values()
    return str(ids["thread_id"])


def test_files_the_code_writes_are_saved_and_images_once(ui_server: Any, fake_model: Any,
                                                         tmp_path: Path) -> None:
    client = OpenAI(base_url=ui_server.base_url, api_key="unused")
    code = "open('/mnt/data/squares.csv', 'w').write('n,square')"
    assistant, _ = scripted_assistant(
        client, fake_model, ToolCalls([Call("python", {"code": code})]),
        Reply("Here is [the table](sandbox:/mnt/data/squares.csv)."),
        tools=[{"type": "code_interpreter"}])
    child = spawn_chat(ui_server, assistant.id, tmp_path)
    child.logfile_read = screen = io.StringIO()
    child.sendline("write the squares to a file")
    child.expect("you>")
    shown = ANSI.sub("", screen.getvalue())
    assert "Here is the table [1]." in shown
    assert "Sources" not in shown
    saved = re.search(r"\[1\] file saved to (\S+)", shown)
    assert saved and Path(saved.group(1)).read_text() == \
        "made by the code: /mnt/data/squares.csv\n"
    assert len(re.findall(r"image saved to", shown)) == 1  # the chart, once
    child.sendeof()
    child.expect(pexpect.EOF)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`vtai serve --fake-model`, as a newcomer starts it (real built-in tools)."""
    with ExitStack() as stack:
        yield start_server(stack, tmp_path_factory.mktemp("demo"), "sqlite", None,
                           args=("--fake-model",))


def test_a_newcomer_sees_the_tools_with_the_demo_model(demo_server: Any,
                                                       tmp_path: Path) -> None:
    child = spawn_chat(demo_server, None, tmp_path, "--functions", "tests.ui.ui_functions")
    child.logfile_read = screen = io.StringIO()
    child.sendline("Chart the squares, please")
    child.expect("you>", timeout=90)
    child.sendline("What is the weather in Paris?")
    child.expect("you>")
    shown = ANSI.sub("", screen.getvalue())
    assert "plt.show()" in shown and "I ran the code" in shown
    assert len(re.findall(r"image saved to", shown)) == 1  # the chart
    assert "get_weather" in shown and '"sky": "sunny"' in shown
    child.sendeof()
    child.expect(pexpect.EOF)
