"""Apps in the field pin openai 1.x: the core flows must work with an old SDK too.

The old SDK lives in its own venv (made once, under .venv-compat/), and drives the server over
real HTTP from a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess
from vtai.testing import Call, FakeModelServer, Reply, ToolCalls

OLD_SDK = "openai==1.55.3"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-compat" / OLD_SDK.replace("==", "-")


def old_sdk_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", OLD_SDK], check=True)
    return python


@pytest.fixture(scope="module")
def python() -> Path:
    return old_sdk_python()


@pytest.mark.timeout(600)  # the fixture may install the old SDK in its venv first
def test_core_flows_with_openai_1x(python: Path, server: ServerProcess,
                                   fake_model: FakeModelServer) -> None:
    suffix = server.base_url.rsplit(":", 1)[-1].split("/")[0]
    models = [f"v1-text-{suffix}", f"v1-tool-{suffix}", f"v1-stream-{suffix}"]
    fake_model.script(models[0], Reply("v1 text reply"))
    fake_model.script(models[1], ToolCalls([Call("lookup", {"q": "x"})]), Reply("done"))
    fake_model.script(models[2], Reply("streamed by v1"))
    result = subprocess.run(
        [str(python), str(Path(__file__).with_name("v1_flows.py")), server.base_url, *models],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "v1 flows ok" in result.stdout
