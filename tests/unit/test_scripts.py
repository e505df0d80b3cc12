"""The README's set-up scripts: scripts/install installs again only when pyproject.toml
changed (it took 21 s on every start of the server)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_install_runs_pip_only_when_the_project_changed(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "install", tmp_path / "scripts" / "install")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    calls = tmp_path / "pip-calls"
    python = venv_bin / "python"  # a stand-in that records what it is asked to do
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    python.chmod(0o755)

    def install(extras: str = "") -> list[str]:
        subprocess.run(["bash", "scripts/install", extras], cwd=tmp_path, check=True)
        return [line for line in calls.read_text().splitlines() if " install " in line] \
            if calls.exists() else []

    assert install("test,ui") == ["-m pip install -q --disable-pip-version-check -e .[test,ui]"]
    assert len(install("test,ui")) == 1  # unchanged: nothing installed
    assert len(install()) == 2  # other extras: installed once for them
    assert len(install()) == 2
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert len(install()) == 3
