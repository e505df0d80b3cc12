"""What a code interpreter call keeps and copies out is bounded: its output (a traceback's
head and tail), its images, the size of a file, and a session's bytes in all; locally and on
a Jupyter gateway (whose files come back through the kernel protocol)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from openai import OpenAI

from tests.api.code_support import start_code_server
from tests.api.test_code_interpreter import LIMITS, bubblewrap, logs, run_code, tool_results
from vtai.testing import FakeModelServer

# Fork and memory bombs, and 3-second time limits: run alone, after the parallel tests
# (scripts/test), so another worker's load does not decide them.
pytestmark = pytest.mark.serial

__all__ = ["bubblewrap"]  # (a fixture these tests use)

MB = 1024 ** 2
MAX_CHARS = 1000
# Time limits are not what these tests are about: room for a slow, busy machine.
BOUNDED = {**LIMITS, "VTAI_CODE_POOL_SIZE": "1", "VTAI_CODE_TIMEOUT": "30",
           "VTAI_CODE_CPU_SECONDS": "30",
           "VTAI_CODE_MAX_OUTPUT_CHARS": str(MAX_CHARS),
           "VTAI_CODE_MAX_OUTPUT_IMAGES": "3",
           "VTAI_CODE_MAX_OUTPUT_FILE_MB": "1",
           "VTAI_CODE_MAX_SESSION_OUTPUT_MB": "3"}
# What a call's logs may hold with BOUNDED: the code's output, a traceback's minimum after
# long output, and the server's notes (see outputs.py).
LOGS_BOUND = MAX_CHARS + 500 + 4000
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                       "60e6kgAAAABJRU5ErkJggg==")  # one pixel


@pytest.fixture(scope="module", params=[("root", "sqlite"), ("gateway", "postgres")],
                ids=["root-sqlite", "gateway-postgres"])
def bounded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            fake_model: FakeModelServer, bubblewrap: None) -> Iterator[OpenAI]:
    """A server that keeps 1000 characters of output per call, 3 images per call, files of
    1 MB at most, and 3 MB copied out per session (read through the kernel protocol on the
    gateway)."""
    mode, backend = request.param
    with ExitStack() as stack:
        server = start_code_server(stack, tmp_path_factory.mktemp(f"code-bounded-{mode}"),
                                   mode, backend, fake_model, BOUNDED)
        yield OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_huge_traceback_is_cut_with_head_and_tail(bounded: OpenAI,
                                                  fake_model: FakeModelServer) -> None:
    run, calls, model = run_code(bounded, fake_model, "raise Exception('A' * 2_000_000)",
                                 "print('x' * 5000)\nraise ValueError('the end')")
    assert run.status == "completed"
    huge, after_output = logs(calls[0]), logs(calls[1])
    assert len(huge) <= MAX_CHARS
    assert "Traceback" in huge[:300] and "raise Exception('A' * 2_000_000)" in huge
    head, cut, tail = re.split(r"\n\[\.\.\. (\d+) characters cut \.\.\.\]\n", huge)
    assert tail.endswith("A" * 300 + "\n")
    assert len(head) + int(cut) + len(tail) > 2_000_000
    assert after_output.startswith("x" * 100) and after_output.endswith("ValueError: the end\n")
    assert "more characters of output not shown" in after_output
    assert len(after_output) <= LOGS_BOUND
    # The model reads the same bounded text, in a prompt of bounded size.
    assert tool_results(fake_model, model) == [huge.strip(), after_output.strip()]
    assert len(json.dumps(fake_model.requests(model)[-1])) < 3 * LOGS_BOUND


def test_images_per_call_are_bounded(bounded: OpenAI, fake_model: FakeModelServer) -> None:
    run, calls, model = run_code(
        bounded, fake_model,
        f"from IPython.display import Image, display\nfor _ in range(5):\n"
        f"    display(Image(data={PNG!r}))")
    assert run.status == "completed"
    outputs = calls[0].code_interpreter.outputs
    images = [o.image.file_id for o in outputs if o.type == "image"]
    assert len(images) == 3
    assert all(bounded.files.content(file_id).read() == PNG for file_id in images)
    assert logs(calls[0]) == "[2 more images not kept: at most 3 per call]\n"
    message = next(iter(bounded.beta.threads.messages.list(run.thread_id)))
    assert [p.image_file.file_id for p in message.content if p.type == "image_file"] == images
    assert tool_results(fake_model, model)[0].endswith(
        "[2 more images not kept: at most 3 per call]")


def test_file_over_the_bound_is_not_copied_out(bounded: OpenAI,
                                               fake_model: FakeModelServer) -> None:
    text = "See sandbox:/mnt/data/big.bin and sandbox:/mnt/data/small.txt"
    run, calls, _ = run_code(
        bounded, fake_model,
        "_ = open('/mnt/data/big.bin', 'wb').write(b'x' * (2 * 1024 ** 2))\n"
        "_ = open('/mnt/data/small.txt', 'w').write('small')", reply=text)
    assert run.status == "completed"
    assert logs(calls[0]) == ("[big.bin (2 MB) not kept: files over 1 MB are not copied "
                              "out]\n")
    message = next(iter(bounded.beta.threads.messages.list(run.thread_id)))
    [annotation] = message.content[0].text.annotations
    assert annotation.text == "sandbox:/mnt/data/small.txt"
    assert bounded.files.content(annotation.file_path.file_id).read() == b"small"


def test_session_budget_holds_across_calls(bounded: OpenAI,
                                           fake_model: FakeModelServer) -> None:
    write = "with open('/mnt/data/{}.bin', 'wb') as f:\n    f.write(b'x' * 900_000)"
    run, calls, _ = run_code(bounded, fake_model, write.format("a"), write.format("b"),
                             write.format("c"))
    assert run.status == "completed" and [logs(c) for c in calls] == ["", "", ""]
    _, calls, _ = run_code(bounded, fake_model, write.format("d"), thread_id=run.thread_id)
    assert logs(calls[0]) == ("[d.bin (878.9 KB) not kept: this session has copied out "
                              "2.6 MB of its 3 MB]\n")
    # Another thread's session has a budget of its own.
    _, calls, _ = run_code(bounded, fake_model, write.format("e"))
    assert logs(calls[0]) == ""
