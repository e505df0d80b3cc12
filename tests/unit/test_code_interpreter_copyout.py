"""The bounds on what a call copies out of its sandbox, and the notes saying what was left
out."""

from __future__ import annotations

from typing import Any

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.copyout import MB, CopyOut, size_text


class FakeSession:
    copied_out = 0


def copies(**settings: Any) -> CopyOut:
    return CopyOut(CodeInterpreterSettings(**settings), FakeSession())  # type: ignore[arg-type]


def test_size_text() -> None:
    assert size_text(400 * MB) == "400 MB"
    assert size_text(3 * MB // 2) == "1.5 MB"
    assert size_text(900_000) == "878.9 KB"
    assert size_text(1024) == "1 KB"
    assert size_text(12) == "12 bytes"


def test_a_file_over_the_bound_is_refused() -> None:
    c = copies(max_output_file_mb=50, max_session_output_mb=200)
    assert c.room() == 50 * MB
    assert c.refusal("out.csv", 50 * MB) is None
    assert c.refusal("big.csv", 400 * MB) == ("[big.csv (400 MB) not kept: files over 50 MB "
                                              "are not copied out]")
    long = "d/" * 100 + "name.csv"
    note = c.refusal(long, 400 * MB)
    assert note is not None and note.startswith("[.../d/d/") and len(note) < 160
    assert note.endswith("/d/name.csv (400 MB) not kept: files over 50 MB are not copied out]")


def test_the_session_budget_counts_every_copy() -> None:
    c = copies(max_output_file_mb=50, max_session_output_mb=100)
    for _ in range(3):
        c.copied(30 * MB)
    assert c.room() == 10 * MB
    assert c.refusal("out.csv", 10 * MB) is None
    assert c.refusal("out.csv", 20 * MB) == ("[out.csv (20 MB) not kept: this session has "
                                             "copied out 90 MB of its 100 MB]")
    # A new call of the same session sees what the earlier ones copied.
    assert CopyOut(CodeInterpreterSettings(max_session_output_mb=100),
                   c.session).room() == 10 * MB
    c.copied(10 * MB)
    assert c.room() == 0 and c.refusal("empty.txt", 0) is None


def test_images_and_files_past_the_count() -> None:
    c = copies(max_output_images=2, max_output_files=3)
    assert [c.count_image() for _ in range(5)] == [1, 2, None, None, None]
    assert c.extra_images() == "[3 more images not kept: at most 2 per call]"
    assert c.extra_files(3) is None
    assert c.extra_files(4) == "[1 more written file not kept: at most 3 per call]"
    assert copies(max_output_images=2).extra_images() is None

