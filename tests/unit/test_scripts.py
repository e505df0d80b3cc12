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


def _stand_ins(tmp_path: Path, uid: int, managers: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """A PATH of stand-in commands: ``id -u`` answers ``uid``; rpm finds no package; each
    package manager records what it is asked to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    commands = {"id": f"echo {uid}", "rpm": "exit 1",
                **{m: f'echo "{m} $*" >> {calls}' for m in managers}}
    for name, body in commands.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir)}, calls


def _system_packages(env: dict[str, str], *packages: str) -> str:
    done = subprocess.run(["/bin/bash", str(REPO / "scripts" / "system-packages"), *packages],
                          env=env, capture_output=True, text=True, check=True)
    return done.stderr


def test_system_packages_installs_with_dnf_as_root(tmp_path: Path) -> None:
    env, calls = _stand_ins(tmp_path, 0, ("dnf",))
    said = _system_packages(env, "bubblewrap")
    assert "installing bubblewrap" in said
    assert calls.read_text().splitlines() == ["dnf install -y -q bubblewrap"]


def test_system_packages_names_the_command_when_not_root(tmp_path: Path) -> None:
    env, calls = _stand_ins(tmp_path, 1000, ("dnf",))
    said = _system_packages(env, "bubblewrap")
    assert "sudo dnf install bubblewrap" in said
    assert not calls.exists()
