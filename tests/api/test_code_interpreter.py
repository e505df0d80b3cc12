"""The code_interpreter tool through the SDK, with the fake model scripting the code calls, on
servers with short limits, in each mode: local kernels with the server as root (on SQLite and
PostgreSQL), with the server as an ordinary user (rootless sandboxes), and on a Jupyter Kernel
Gateway (bubblewrap, which scripts/test installs, runs the sandboxes of all three)."""

from __future__ import annotations

import ast
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from openai import AssistantEventHandler, OpenAI

from tests.api.code_support import start_code_server
from tests.api.runs_support import scripted_assistant
from tests.conftest import start_server
from tests.support import ServerProcess
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

# Fork and memory bombs, and 3-second time limits: run alone, after the parallel tests
# (scripts/test), so another worker's load does not decide them.
pytestmark = pytest.mark.serial

TIMEOUT = 3
LIMITS = {
    "VTAI_CODE_TIMEOUT": str(TIMEOUT),
    "VTAI_CODE_CPU_SECONDS": str(TIMEOUT),
    "VTAI_CODE_POOL_SIZE": "2",
    "VTAI_CODE_MEMORY_MB": "1024",
    "VTAI_CODE_DISK_MB": "64",
    "VTAI_CODE_MAX_PROCESSES": "48",
}


@pytest.fixture(scope="session")
def bubblewrap() -> None:
    """Debian's bubblewrap (scripts/test installs it); CI must have it."""
    if shutil.which("bwrap"):
        return
    if os.environ.get("CI"):
        pytest.fail("bubblewrap is required in CI (scripts/test installs it)")
    pytest.skip("bubblewrap is not installed (scripts/test installs it, as root)")


# (mode, database): the server as root, as an ordinary user, and kernels on a gateway
MODES = [("root", "sqlite"), ("root", "postgres"), ("rootless", "sqlite"),
         ("gateway", "postgres")]


@pytest.fixture(scope="module", params=MODES, ids=["-".join(m) for m in MODES])
def ci_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              fake_model: FakeModelServer, bubblewrap: None) -> Iterator[ServerProcess]:
    mode, backend = request.param
    with ExitStack() as stack:
        server = start_code_server(stack, tmp_path_factory.mktemp(f"code-{mode}-{backend}"),
                                   mode, backend, fake_model, LIMITS)
        server.mode = mode  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def ci_client(ci_server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=ci_server.base_url, api_key="unused", max_retries=0)


def code_steps(*codes: str, reply: str = "Done.") -> list[Any]:
    return [*(ToolCalls([Call("code_interpreter", {"code": code})]) for code in codes),
            Reply(reply)]


def run_code(client: OpenAI, fake_model: FakeModelServer, *codes: str, thread_id: str | None = None,
             reply: str = "Done.", **create: Any) -> tuple[Any, list[Any], str]:
    """A run whose model calls the code interpreter with each of ``codes``, then replies.
    Returns the run, its code_interpreter calls in order, and the model name."""
    assistant, model = scripted_assistant(client, fake_model, *code_steps(*codes, reply=reply),
                                          tools=[{"type": "code_interpreter"}])
    if thread_id is None:
        thread_id = client.beta.threads.create().id
    client.beta.threads.messages.create(thread_id, role="user", content="Run it.", **create)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id,
                                                   assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc")
    calls = [call for step in steps if step.type == "tool_calls"
             for call in step.step_details.tool_calls]
    return run, calls, model


def logs(call: Any) -> str:
    return "".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs")


def tool_results(fake_model: FakeModelServer, model: str) -> list[str]:
    """What the model read back from its tool calls, in order."""
    last = fake_model.requests(model)[-1]["messages"]
    return [m["content"] for m in last if m["role"] == "tool"]


def test_state_persists_across_calls_and_runs(ci_client: OpenAI,
                                              fake_model: FakeModelServer) -> None:
    run, calls, model = run_code(ci_client, fake_model, "x = 20", "x + 1")
    assert run.status == "completed"
    assert [c.type for c in calls] == ["code_interpreter"] * 2
    assert [c.code_interpreter.input for c in calls] == ["x = 20", "x + 1"]
    assert calls[0].code_interpreter.outputs == []
    assert logs(calls[1]) == "21\n"
    assert tool_results(fake_model, model) == ["(no output)", "21"]
    run, calls, _ = run_code(ci_client, fake_model, "print(x * 2)", thread_id=run.thread_id)
    assert run.status == "completed" and logs(calls[0]) == "40\n"


def test_streamed_step_deltas(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(
        ci_client, fake_model, *code_steps("for i in range(3): print(i)"),
        tools=[{"type": "code_interpreter"}])
    thread = ci_client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    inputs: list[str] = []
    streamed: list[str] = []

    class Handler(AssistantEventHandler):
        def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
            inputs.append(tool_call.code_interpreter.input)

        def on_tool_call_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
            assert delta.type == "code_interpreter"
            streamed.extend(o.logs for o in delta.code_interpreter.outputs or []
                            if o.type == "logs")

        def on_tool_call_done(self, tool_call) -> None:  # type: ignore[no-untyped-def]
            assert tool_call.code_interpreter.outputs[0].logs == "0\n1\n2\n"

    with ci_client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                            event_handler=Handler()) as stream:
        stream.until_done()
        assert stream.current_run.status == "completed"
    assert inputs == ["for i in range(3): print(i)"]
    assert "".join(streamed) == "0\n1\n2\n"


def test_raw_code_arguments_are_accepted(ci_client: OpenAI,
                                         fake_model: FakeModelServer) -> None:
    assistant, _ = scripted_assistant(
        ci_client, fake_model, ToolCalls([Call("code_interpreter", "print(6 * 7)")]),
        Reply("ok"), tools=[{"type": "code_interpreter"}])
    run = ci_client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "?"}]},
        poll_interval_ms=50)
    step = next(s for s in ci_client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)
                if s.type == "tool_calls")
    assert logs(step.step_details.tool_calls[0]) == "42\n"


def test_input_files_appear_in_mnt_data(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    csv = ci_client.files.create(file=("data.csv", b"a,b\n1,2\n3,4\n"), purpose="assistants")
    notes = ci_client.files.create(file=("notes.txt", b"from the assistant"),
                                   purpose="assistants")
    assistant, _ = scripted_assistant(
        ci_client, fake_model, *code_steps(
            "import pandas as pd\nprint(pd.read_csv('/mnt/data/data.csv')['b'].sum())\n"
            "print(open('/mnt/data/notes.txt').read())"),
        tools=[{"type": "code_interpreter"}],
        tool_resources={"code_interpreter": {"file_ids": [notes.id]}})
    thread = ci_client.beta.threads.create(messages=[{
        "role": "user", "content": "Sum column b.",
        "attachments": [{"file_id": csv.id, "tools": [{"type": "code_interpreter"}]}]}])
    run = ci_client.beta.threads.runs.create_and_poll(thread_id=thread.id,
                                                      assistant_id=assistant.id,
                                                      poll_interval_ms=50)
    assert run.status == "completed"
    step = next(s for s in ci_client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
                if s.type == "tool_calls")
    assert logs(step.step_details.tool_calls[0]) == "6\nfrom the assistant\n"


def test_plot_becomes_an_image_file(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    run, calls, model = run_code(
        ci_client, fake_model,
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()",
        reply="Here is the chart.")
    assert run.status == "completed"
    outputs = calls[0].code_interpreter.outputs
    assert [o.type for o in outputs] == ["image"]
    file_id = outputs[0].image.file_id
    assert ci_client.files.content(file_id).read().startswith(b"\x89PNG\r\n\x1a\n")
    assert ci_client.files.retrieve(file_id).purpose == "assistants_output"
    message = next(iter(ci_client.beta.threads.messages.list(run.thread_id)))
    assert [p.type for p in message.content] == ["text", "image_file"]
    assert message.content[1].image_file.file_id == file_id
    assert message.content[0].text.value == "Here is the chart."
    assert tool_results(fake_model, model) == [f"[image {file_id} displayed to the user]"]


def test_written_file_becomes_a_file_path_annotation(ci_client: OpenAI,
                                                     fake_model: FakeModelServer) -> None:
    text = "Download [the table](sandbox:/mnt/data/out.csv)."
    run, _, _ = run_code(
        ci_client, fake_model,
        "import pandas as pd\npd.DataFrame({'a': [1, 2]}).to_csv('/mnt/data/out.csv', "
        "index=False)", reply=text)
    assert run.status == "completed"
    message = next(iter(ci_client.beta.threads.messages.list(run.thread_id)))
    content = message.content[0].text
    assert content.value == text
    [annotation] = content.annotations
    assert annotation.type == "file_path"
    assert annotation.text == "sandbox:/mnt/data/out.csv"
    assert text[annotation.start_index:annotation.end_index] == annotation.text
    file = ci_client.files.retrieve(annotation.file_path.file_id)
    assert file.filename == "out.csv" and file.purpose == "assistants_output"
    assert ci_client.files.content(file.id).read() == b"a\n1\n2\n"


def test_stderr_and_tracebacks_are_reported(ci_client: OpenAI,
                                            fake_model: FakeModelServer) -> None:
    # Written in turns, with pauses: each stream's own buffering would send it grouped.
    run, calls, model = run_code(
        ci_client, fake_model, "import sys, time\nfor i in range(3):\n    print('out', i)\n"
        "    print('oops', i, file=sys.stderr)\n    time.sleep(0.02)\n1 / 0")
    assert run.status == "completed"
    text = logs(calls[0])
    assert text.startswith("".join(f"out {i}\noops {i}\n" for i in range(3)))
    assert "ZeroDivisionError: division by zero" in text and "\x1b[" not in text
    assert "ZeroDivisionError" in tool_results(fake_model, model)[0]


def run_beside(client: OpenAI, fake_model: FakeModelServer, *codes: str) -> tuple[Any, list[Any]]:
    """Runs ``codes`` on a new thread while another thread runs ``1 + 1`` again and again,
    each of which must complete with its answer (the first one included: a kernel from the
    pool). How long they take is not checked: on a busy machine a whole run (two model
    calls and the code) can take longer than the sandbox's own limit."""
    stop = threading.Event()
    failures: list[str] = []
    done: list[str] = []

    other_thread = client.beta.threads.create().id

    def beside() -> None:
        while not stop.is_set():
            run, calls, _ = run_code(client, fake_model, "1 + 1", thread_id=other_thread)
            if run.status != "completed" or logs(calls[0]) != "2\n":
                failures.append(f"{run.status} {calls}")
            done.append(run.id)

    other = threading.Thread(target=beside)
    other.start()
    try:
        run, calls, _ = run_code(client, fake_model, *codes)
    finally:
        stop.set()
        other.join()
    assert not failures and done
    return run, calls


def test_timeout_interrupts_and_keeps_state(ci_client: OpenAI,
                                            fake_model: FakeModelServer) -> None:
    run, calls = run_beside(ci_client, fake_model, "kept = 'yes'",
                            "import time\nprint('started', flush=True)\ntime.sleep(60)",
                            "while True:\n    pass", "print(kept)")
    assert run.status == "completed"
    slept, looped, after = (logs(c) for c in calls[1:])
    assert slept.startswith("started\n") and "KeyboardInterrupt" in slept
    assert f"Execution timed out after {TIMEOUT} seconds; it was interrupted" in slept
    assert "timed out" in looped
    assert after == "yes\n"


def test_uninterruptible_code_restarts_the_kernel(ci_client: OpenAI,
                                                  fake_model: FakeModelServer) -> None:
    _, calls = run_beside(
        ci_client, fake_model, "lost = 1",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "print('lost' in globals())")
    assert "the kernel was restarted" in logs(calls[1])
    assert logs(calls[2]) == "False\n"


def test_memory_bomb_fails_safely(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    run, calls = run_beside(
        ci_client, fake_model, "block = bytearray(4 * 1024 ** 3)",
        # bytes(n) comes from calloc: address space the limit counts, without the time of
        # writing every page, which on a slow machine can outlast the 3 s time limit.
        "chunks = []\nwhile True:\n    chunks.append(bytes(256 * 1024 ** 2))",
        "del chunks\nprint('alive')")
    assert run.status == "completed"
    assert "MemoryError" in logs(calls[0]) and "MemoryError" in logs(calls[1])
    assert logs(calls[2]) == "alive\n"


def test_fork_bomb_stops(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    run, calls = run_beside(ci_client, fake_model, "import os\nwhile True:\n    os.fork()",
                            "import subprocess\nprint(subprocess.run(['echo', 'forks again'], "
                            "capture_output=True, text=True).stdout)")
    assert run.status == "completed"
    # The process limit stops the forks (BlockingIOError), or the wall-clock limit does.
    assert "BlockingIOError" in logs(calls[0]) or "timed out" in logs(calls[0])
    assert logs(calls[1]) == "forks again\n\n"


def test_no_network(ci_server: ServerProcess, ci_client: OpenAI,
                    fake_model: FakeModelServer) -> None:
    _, calls = run_beside(
        ci_client, fake_model,
        f"import socket\nsocket.create_connection(('127.0.0.1', {ci_server.port}), timeout=2)",
        "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)")
    assert "ConnectionRefusedError" in logs(calls[0])
    assert "URLError" in logs(calls[1])


def test_files_outside_the_session_are_out_of_reach(ci_server: ServerProcess, ci_client: OpenAI,
                                                    fake_model: FakeModelServer) -> None:
    run_code(ci_client, fake_model, "open('/mnt/data/secret.txt', 'w').write('mine')")
    # As root, another session's files are on the host's disk, at a path tried below; in the
    # other modes they are in its own sandbox's mount namespace, at no path of this one.
    secrets = list((ci_server.data_dir / "code").glob("*/*/data/secret.txt"))
    secret = str(secrets[0]) if secrets else "/mnt/data/secret.txt"
    _, calls = run_beside(
        ci_client, fake_model,
        "import os\nprint(sorted(os.listdir('/mnt/data')))",
        f"open({secret!r}).read()",
        "open('/etc/shadow').read()",
        f"open({str(ci_server.data_dir / 'vtai.db')!r}, 'rb').read()",
        "open('/usr/new.txt', 'w')",
        "print(os.getuid() != 0, sorted(os.listdir('/')))")
    assert logs(calls[0]) == "[]\n"
    assert all("FileNotFoundError" in logs(c) for c in calls[1:4])
    assert "OSError: [Errno 30] Read-only file system" in logs(calls[4])
    assert logs(calls[5]).startswith("True [")


def test_sessions_cannot_see_each_other(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    """Each session has a pid namespace of its own: no other session's process is there to
    see or signal, whatever the mode (the same uid, as rootless sessions are, included)."""
    list_processes = ("import os\nprint(sorted(int(p) for p in os.listdir('/proc') "
                      "if p.isdigit()), os.getpid())")
    _, first, _ = run_code(ci_client, fake_model, "import time\nstarted = time.time()",
                           list_processes)
    _, second, _ = run_code(ci_client, fake_model, list_processes)
    for call in (first[1], second[0]):
        pids, own = logs(call).strip().rsplit(" ", 1)
        # the sandbox's init, the kernel (its own pid), and what it runs at the moment
        assert len(ast.literal_eval(pids)) <= 3 and int(own) in ast.literal_eval(pids)


def test_kernel_the_gateway_lost_is_replaced(ci_server: ServerProcess, ci_client: OpenAI,
                                             fake_model: FakeModelServer) -> None:
    if ci_server.mode != "gateway":  # type: ignore[attr-defined]
        pytest.skip("kernels on a gateway only")
    gateway = ci_server.gateway  # type: ignore[attr-defined]
    run, _, _ = run_code(ci_client, fake_model, "kept = 1")
    for kernel_id in gateway.kernel_ids():  # (those started ahead for new threads too)
        gateway.delete(kernel_id)
    _, calls, _ = run_code(ci_client, fake_model, "print('kept' in globals())",
                           thread_id=run.thread_id)
    assert logs(calls[0]) == (
        "Note: the kernel service no longer had this session's kernel (it was stopped or "
        "lost), so a new one was started: variables, imports and files in /mnt/data from "
        "earlier calls are gone.\nFalse\n")
    _, calls, _ = run_code(ci_client, fake_model, "print('new')")  # a new thread: no note
    assert logs(calls[0]) == "new\n"


def test_disk_limit(ci_client: OpenAI, fake_model: FakeModelServer) -> None:
    run, calls, _ = run_code(
        ci_client, fake_model,
        "with open('/mnt/data/big.bin', 'wb') as f:\n    f.write(b'x' * (100 * 1024 ** 2))",
        "with open('/tmp/big.bin', 'wb') as f:\n    f.write(b'x' * (100 * 1024 ** 2))")
    assert run.status == "completed"
    assert "No space left on device" in logs(calls[0]) or "File too large" in logs(calls[0])
    assert "No space left on device" in logs(calls[1]) or "File too large" in logs(calls[1])


@pytest.fixture(scope="module", params=[("root", "sqlite"), ("gateway", "postgres")],
                ids=["root-sqlite", "gateway-postgres"])
def short_lived_server(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModelServer,
                       bubblewrap: None) -> Iterator[ServerProcess]:
    """A server whose sessions are stopped after 6 idle seconds, or (local kernels) after
    half a CPU second used between calls (both checked every 2 seconds; idle gateway
    kernels every 10)."""
    mode, backend = request.param
    with ExitStack() as stack:
        server = start_code_server(stack, tmp_path_factory.mktemp(f"code-idle-{mode}"), mode,
                                   backend, fake_model,
                                   {**LIMITS, "VTAI_CODE_IDLE_SECONDS": "6",
                                    "VTAI_CODE_IDLE_CPU_SECONDS": "0.5"})
        server.mode = mode  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def short_lived(short_lived_server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=short_lived_server.base_url, api_key="unused", max_retries=0)


def test_kernel_busy_between_calls_is_stopped(short_lived_server: ServerProcess,
                                              short_lived: OpenAI,
                                              fake_model: FakeModelServer) -> None:
    if short_lived_server.mode == "gateway":  # type: ignore[attr-defined]
        pytest.skip("a gateway's kernels between calls are the gateway's")
    run, _, _ = run_code(short_lived, fake_model,
                         "import threading\nkept = 1\ndef spin():\n    while True:\n"
                         "        pass\nthreading.Thread(target=spin).start()")
    short_lived_server.wait_for_log(
        f"stopping the kernel of {run.thread_id}, busy between calls")
    _, calls, _ = run_code(short_lived, fake_model, "print('kept' in globals())",
                           thread_id=run.thread_id)
    assert logs(calls[0]).startswith("Note: the kernel had stopped since the previous call")
    assert logs(calls[0]).endswith("False\n")


def test_idle_sessions_are_stopped(short_lived_server: ServerProcess, short_lived: OpenAI,
                                   fake_model: FakeModelServer) -> None:
    run, _, _ = run_code(short_lived, fake_model,
                         "kept = 1\nopen('/mnt/data/f.txt', 'w').write('x')")
    short_lived_server.wait_for_log(f"stopping the idle session of {run.thread_id}")
    _, calls, _ = run_code(short_lived, fake_model,
                           "import os\nprint('kept' in globals(), os.listdir('/mnt/data'))",
                           thread_id=run.thread_id)
    assert logs(calls[0]) == (
        "Note: this is a new Python session: the previous one was stopped after 6 seconds "
        "without a call, so variables, imports and files written in /mnt/data by earlier "
        "calls are gone.\nFalse []\n")


def test_unsandboxed_kernels_need_an_explicit_allowance(
        tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModelServer) -> None:
    with ExitStack() as stack:
        refused = start_server(stack, tmp_path_factory.mktemp("code-none"), "sqlite",
                               fake_model, {"VTAI_CODE_SANDBOX": "none"})
        client = OpenAI(base_url=refused.base_url, api_key="unused", max_retries=0)
        run, calls, _ = run_code(client, fake_model, "print('ran')")
        assert run.status == "completed"
        assert logs(calls[0]).startswith("Code execution is unavailable: VTAI_CODE_SANDBOX=none")
        assert "code interpreter unavailable: VTAI_CODE_SANDBOX=none" in refused.log()

        allowed = start_server(stack, tmp_path_factory.mktemp("code-none-ok"), "sqlite",
                               fake_model, {"VTAI_CODE_SANDBOX": "none",
                                            "VTAI_CODE_ALLOW_UNSANDBOXED": "true"})
        client = OpenAI(base_url=allowed.base_url, api_key="unused", max_retries=0)
        _, calls, _ = run_code(client, fake_model, "import os\nprint(os.getcwd())")
        assert logs(calls[0]).startswith(str(allowed.data_dir / "code"))
        assert "kernels run WITHOUT a sandbox" in allowed.log()
