"""Where a session's local kernel runs: a bubblewrap sandbox (bubblewrap.py), or (when
allowed) no sandbox at all; what every kind of sandbox provides, and the session's
directories on the host."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vtai.server.settings import CodeInterpreterSettings

LAUNCH_SCRIPT = Path(__file__).with_name("launch.py")
SANDBOX_DATA = "/mnt/data"


@dataclass
class Workspace:
    """A session's directories on the host. ``uid`` owns what the kernel may write."""

    root: Path
    uid: int | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def shm(self) -> Path:
        return self.root / "shm"

    @property
    def log(self) -> Path:
        return self.root / "kernel.log"

    def ipc_dir(self, generation: int) -> Path:
        """A fresh directory for each kernel started in the session: its sockets and
        connection file."""
        return self.root / f"ipc{generation}"


def kernel_env(home: str) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home, "TMPDIR": home, "USER": "sandbox", "LANG": "C.UTF-8",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib", "IPYTHONDIR": f"{home}/.ipython",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Threads count against the process limit, and BLAS libraries start one per core
        # at import: on a many-core host numpy could not even be imported.
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        # Each thread's malloc arena reserves 64 MB of address space, which the memory
        # limit (RLIMIT_AS) counts.
        "MALLOC_ARENA_MAX": "2",
    }
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # set on hosts that need them
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def launch_config(settings: CodeInterpreterSettings, uid: int | None, argv: list[str],
                  check: bool, per_namespace: bool = False,
                  site_dirs: list[str] | None = None) -> str:
    limits = {
        "RLIMIT_AS": settings.memory_mb * 1024 * 1024,
        "RLIMIT_FSIZE": settings.disk_mb * 1024 * 1024,
        "RLIMIT_CORE": 0,
    }
    if uid is not None or per_namespace:
        # Counted per uid, and per user namespace (Linux 5.14+): only meaningful when the
        # session has a uid, or a user namespace, of its own.
        limits["RLIMIT_NPROC"] = settings.max_processes
    return json.dumps({"limits": limits, "uid": uid, "argv": argv, "check": check,
                       "site_dirs": site_dirs or []})


class Sandbox(Protocol):
    name: str
    isolated: bool
    # The kernel shares the server's uid (rootless): the server connects to its sockets
    # only through descriptors it checked (kernel.pinned_sockets), and its files are reached
    # through the sandbox's own root (/proc/PID/root), since its tmpfs is the sandbox's.
    shares_uid: bool
    # A kernel restarted in the session finds the files of the one before.
    keeps_files: bool

    def unavailable(self) -> str | None:
        """Why kernels cannot start here, or None."""
        ...

    def failure_hint(self, output: str) -> str:
        """What to do when the sandbox's probe failed, saying ``output``; or ""."""
        ...

    def prepare(self, workspace: Workspace) -> None:
        """Make the session's directories."""
        ...

    def release(self, workspace: Workspace) -> None:
        """Remove the session's directories and everything in them."""
        ...

    def command(self, workspace: Workspace, ipc: Path, argv: list[str],
                check: bool = False) -> list[str]:
        """The command starting a kernel with ``argv`` (ipykernel's arguments), or only
        checking that one could start when ``check``."""
        ...

    def spawn(self, workspace: Workspace) -> tuple[dict[str, str], Path]:
        """The environment and working directory of the command."""
        ...

    def seal(self, ipc: Path) -> None:
        """Called once the kernel is listening: take the socket directory out of its
        hands."""
        ...

    def data_dir(self, workspace: Workspace, kernel_pid: int) -> Path:
        """Where the server finds the session's /mnt/data."""
        ...


class Unsandboxed:
    """Kernels as plain processes of the server's user, in the session directory, with the
    memory and file size rlimits only. Code sees its files in the working directory, not
    under /mnt/data, and can reach the network and the whole file system."""

    name = "none"
    isolated = False
    shares_uid = False  # (nothing to protect: the kernel can do what the server can)
    keeps_files = True

    def __init__(self, settings: CodeInterpreterSettings) -> None:
        self.settings = settings

    def unavailable(self) -> str | None:
        if not self.settings.allow_unsandboxed:
            return ("VTAI_CODE_SANDBOX=none runs model-written code without any isolation; "
                    "refusing unless VTAI_CODE_ALLOW_UNSANDBOXED=true is set as well")
        return None

    def failure_hint(self, output: str) -> str:
        return ""

    def prepare(self, workspace: Workspace) -> None:
        for path in (workspace.data, workspace.tmp):
            path.mkdir(parents=True, mode=0o700)

    def release(self, workspace: Workspace) -> None:
        shutil.rmtree(workspace.root, ignore_errors=True)

    def command(self, workspace: Workspace, ipc: Path, argv: list[str],
                check: bool = False) -> list[str]:
        return [sys.executable, str(LAUNCH_SCRIPT),
                launch_config(self.settings, None, argv, check)]

    def spawn(self, workspace: Workspace) -> tuple[dict[str, str], Path]:
        return kernel_env(str(workspace.tmp)), workspace.data

    def seal(self, ipc: Path) -> None:
        pass

    def data_dir(self, workspace: Workspace, kernel_pid: int) -> Path:
        return workspace.data


def build_sandbox(settings: CodeInterpreterSettings) -> Sandbox:
    from vtai.server.tools.code_interpreter.bubblewrap import Bubblewrap

    return Bubblewrap(settings) if settings.sandbox == "bwrap" else Unsandboxed(settings)
