"""Servers for the code interpreter's tests, in each of its modes: local kernels with the server
as root, local kernels with the server as an ordinary user (rootless sandboxes), and kernels on
a real Jupyter Kernel Gateway whose kernelspec is the sandboxed kernel
(code_interpreter/kernelspec.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.support import ServerProcess, free_port

# An ordinary user for the rootless server: a uid no account has (setpriv needs none).
ROOTLESS_UID = 4201
GATEWAY_KERNEL = "vtai-python"


def need(condition: bool, why: str) -> None:
    """Skip (fail in CI) unless ``condition``."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (required in CI)")
    pytest.skip(why)


def rootless_possible() -> str | None:
    """Why a server cannot be run here as an ordinary user in user namespaces, or None."""
    if os.geteuid() != 0:
        return "the tests run the rootless server through setpriv, as root"
    if not shutil.which("setpriv") or not shutil.which("bwrap"):
        return "setpriv (util-linux) and bwrap (bubblewrap) are needed"
    probe = subprocess.run(
        ["setpriv", f"--reuid={ROOTLESS_UID}", f"--regid={ROOTLESS_UID}", "--clear-groups",
         "bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"],
        capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"user namespaces are not permitted to ordinary users here: {probe.stderr}"
    return None


def as_ordinary_user(stack: ExitStack) -> tuple[Path, str]:
    """A data directory the ordinary user owns, and a 'python' that runs as that user."""
    data_dir = Path(tempfile.mkdtemp(prefix="vtai-rootless-"))
    stack.callback(shutil.rmtree, data_dir, True)
    os.chown(data_dir, ROOTLESS_UID, ROOTLESS_UID)
    python = data_dir.with_name(data_dir.name + "-python")
    python.write_text(f"#!/bin/sh\nexec setpriv --reuid={ROOTLESS_UID} "
                      f"--regid={ROOTLESS_UID} --clear-groups {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    stack.callback(python.unlink)
    return data_dir, str(python)


class KernelGateway:
    """``jupyter kernelgateway`` with the sandboxed kernelspec, on a free port."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.log_path = workdir / "gateway.log"
        prefix = workdir / "prefix"
        subprocess.run([sys.executable, "-m", "vtai.server.tools.code_interpreter.kernelspec",
                        "install", "--prefix", str(prefix)], check=True, capture_output=True)
        # The kernels' unix sockets live in the runtime dir: a path of at most 107 bytes
        # each, so it is a short one of its own rather than under pytest's tmp dir.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="vtai-gw-"))
        self.env = {**os.environ, **env, "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
                    "JUPYTER_DATA_DIR": str(workdir / "data")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> KernelGateway:
        jupyter = Path(sys.executable).with_name("jupyter")
        self.proc = subprocess.Popen(
            [str(jupyter), "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1",
             f"--KernelGatewayApp.port={self.port}",
             f"--KernelGatewayApp.auth_token={self.token}",
             "--KernelManager.transport=ipc"],
            env=self.env, cwd=self.workdir, stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the kernel gateway exited:\n{self.log()}")
            try:
                answer = httpx.get(f"{self.url}/api/kernelspecs", timeout=1,
                                   headers={"Authorization": f"token {self.token}"})
                if answer.status_code == 200 and GATEWAY_KERNEL in answer.text:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the kernel gateway did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kernel_ids(self) -> list[str]:
        """The kernels the gateway runs (by their connection files)."""
        return sorted(p.stem.removeprefix("kernel-")
                      for p in self.runtime_dir.glob("kernel-*.json"))

    def delete(self, kernel_id: str) -> None:
        httpx.delete(f"{self.url}/api/kernels/{kernel_id}", timeout=30,
                     headers={"Authorization": f"token {self.token}"})

    def server_env(self) -> dict[str, str]:
        return {"VTAI_CODE_BACKEND": "gateway", "VTAI_CODE_GATEWAY_URL": self.url,
                "VTAI_CODE_GATEWAY_TOKEN": self.token,
                "VTAI_CODE_GATEWAY_KERNEL": GATEWAY_KERNEL}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


@contextmanager
def kernel_gateway(workdir: Path, env: dict[str, str]) -> Iterator[KernelGateway]:
    need(shutil.which("bwrap") is not None, "bubblewrap is not installed (scripts/test "
                                             "installs it, as root)")
    gateway = KernelGateway(workdir, env)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def start_code_server(stack: ExitStack, tmp: Path, mode: str, backend: str,
                      fake_model: object, env: dict[str, str]) -> ServerProcess:
    """A server whose code interpreter runs in ``mode``: root, rootless or gateway."""
    if mode == "rootless":
        problem = rootless_possible()
        need(problem is None, problem or "")
        data_dir, python = as_ordinary_user(stack)
        return start_server(stack, data_dir, backend, fake_model,
                            {**env, "HOME": str(data_dir)}, python=python)
    if mode == "gateway":
        gateway = stack.enter_context(kernel_gateway(tmp / "gateway", env))
        server = start_server(stack, tmp / "server", backend, fake_model,
                              {**env, **gateway.server_env()})
        server.gateway = gateway  # type: ignore[attr-defined]
        return server
    return start_server(stack, tmp, backend, fake_model, env)
