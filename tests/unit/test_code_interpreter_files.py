"""Files in a session's data directory, which the model's code controls: links are never
followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vtai.server.tools.code_interpreter import files


def test_safe_name() -> None:
    assert files.safe_name("data.csv", "file-1") == "data.csv"
    assert files.safe_name("../../etc/passwd", "file-1") == "passwd"
    assert files.safe_name("a\\b\\c.txt", "file-1") == "c.txt"
    assert files.safe_name("..", "file-1") == "file-1"
    assert files.safe_name("dir/", "file-1") == "file-1"


def test_create_replaces_a_link_instead_of_following_it(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside.txt"
    data.mkdir()
    outside.write_text("precious")
    (data / "in.csv").symlink_to(outside)
    fd = files.create(data, "in.csv", None)
    try:
        files.write_all(fd, b"in")
        files.write_all(fd, b"put")
    finally:
        os.close(fd)
    assert outside.read_text() == "precious"
    assert not (data / "in.csv").is_symlink() and (data / "in.csv").read_bytes() == b"input"


def test_written_files_and_reading_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "kept.txt").write_text("same")
    before = files.snapshot(data)
    (data / "sub" / "new.txt").write_text("new")
    (data / ".hidden").write_text("no")
    (tmp_path / "secret").write_text("secret")
    (data / "link.txt").symlink_to(tmp_path / "secret")
    os.mkfifo(data / "pipe")
    after = files.snapshot(data)
    assert files.written(before, after) == ["sub/new.txt"]
    assert files.read(data, "sub/new.txt", 3) == b"new"
    assert files.read(data, "link.txt", 100) is None
    assert files.read(data, "pipe", 100) is None
    (data / "sub").rename(data / "moved")
    (data / "sub").symlink_to(tmp_path)
    assert files.read(data, "sub/secret", 100) is None


def test_read_refuses_a_file_over_the_bound_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "small.bin").write_bytes(b"x" * 10)
    assert files.read(tmp_path, "small.bin", 10) == b"x" * 10
    with pytest.raises(files.TooBig) as refused:
        files.read(tmp_path, "small.bin", 9)
    assert refused.value.size == 10
    # Sparse, so it takes no disk; read whole, it would need 64 GB of memory.
    with open(tmp_path / "huge.bin", "wb") as huge:
        huge.truncate(64 * 1024 ** 3)
    with pytest.raises(files.TooBig) as refused:
        files.read(tmp_path, "huge.bin", 1024 ** 2)
    assert refused.value.size == 64 * 1024 ** 3
