"""Where a session's kernel runs: a bubblewrap sandbox, or (when allowed) no sandbox at all.

Under bubblewrap each session gets a size-limited tmpfs (its disk limit) holding the
directories the kernel sees as ``/mnt/data`` and ``/tmp``, and its kernel runs in new
network, pid, ipc and uts namespaces, with read-only system and Python directories, as a uid
of its own (``uid_base + n``) so that its process limit and its files are its own.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter import mounts

LAUNCH_SCRIPT = Path(__file__).with_name("launch.py")
SANDBOX_DATA = "/mnt/data"
_SANDBOX_LAUNCH = "/opt/vtai/launch.py"
# What programs and shared libraries need from /etc; never passwd, shadow or the like.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/etc/alternatives", "/etc/fonts", "/etc/mime.types")
_MAX_SOCKET_PATH = 100  # unix socket paths are at most 107 bytes; ZMQ adds "-N"


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


def _kernel_env(home: str) -> dict[str, str]:
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


def _launch_config(settings: CodeInterpreterSettings, uid: int | None, argv: list[str],
                   check: bool) -> str:
    limits = {
        "RLIMIT_AS": settings.memory_mb * 1024 * 1024,
        "RLIMIT_FSIZE": settings.disk_mb * 1024 * 1024,
        "RLIMIT_CORE": 0,
    }
    if uid is not None:
        # Counted per uid: only meaningful when the session has a uid of its own.
        limits["RLIMIT_NPROC"] = settings.max_processes
    return json.dumps({"limits": limits, "uid": uid, "argv": argv, "check": check})


class Sandbox(Protocol):
    name: str
    isolated: bool

    def unavailable(self) -> str | None:
        """Why kernels cannot start here, or None."""
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


class Bubblewrap:
    name = "bubblewrap"
    isolated = True

    def __init__(self, settings: CodeInterpreterSettings) -> None:
        self.settings = settings
        self.bwrap = shutil.which("bwrap")

    def unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "bubblewrap sandboxes need Linux"
        if self.bwrap is None:
            return "the bwrap command is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        if os.geteuid() != 0:
            return ("the server does not run as root, which the sandbox needs to give each "
                    "session its own uid and a size-limited tmpfs")
        return None

    def prepare(self, workspace: Workspace) -> None:
        assert workspace.uid is not None
        if len(str(workspace.ipc_dir(0))) + 8 > _MAX_SOCKET_PATH:
            raise OSError(f"the data directory path is too long for kernel sockets: "
                          f"{workspace.root}")
        workspace.root.mkdir(parents=True)
        mounts.mount_tmpfs(workspace.root, self.settings.disk_mb * 1024 * 1024)
        for path in (workspace.data, workspace.tmp, workspace.shm):
            path.mkdir(mode=0o700)
            os.chown(path, workspace.uid, workspace.uid)

    def release(self, workspace: Workspace) -> None:
        for point in mounts.mounts_under(workspace.root):
            mounts.unmount(point)
        shutil.rmtree(workspace.root, ignore_errors=True)

    def command(self, workspace: Workspace, ipc: Path, argv: list[str],
                check: bool = False) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-net",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--clearenv"]
        for key, value in _kernel_env("/tmp").items():
            args += ["--setenv", key, value]
        made: set[str] = {"/"}

        def parents(path: str) -> None:
            # bwrap makes missing parents 0700, which the kernel's uid could not cross.
            for parent in reversed(Path(path).parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args.extend(["--perms", "0755", "--dir", str(parent)])

        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        parents("/etc/x")
        for path in _ETC_FILES:
            args += ["--ro-bind-try", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        parents(SANDBOX_DATA)
        args += ["--bind", str(workspace.data), SANDBOX_DATA,
                 "--bind", str(workspace.tmp), "/tmp",
                 "--bind", str(workspace.shm), "/dev/shm"]
        made.update({"/tmp", "/dev", "/dev/shm"})
        # After /tmp: a Python installed under /tmp (a virtualenv there) stays visible.
        for path in _python_dirs():
            parents(path)
            args += ["--ro-bind", path, path]
        parents(_SANDBOX_LAUNCH)
        args += ["--ro-bind", str(LAUNCH_SCRIPT), _SANDBOX_LAUNCH]
        # The kernel's sockets are reached by the server at the same path as inside.
        parents(str(ipc))
        args += ["--bind", str(ipc), str(ipc), "--chdir", SANDBOX_DATA,
                 sys.executable, _SANDBOX_LAUNCH,
                 _launch_config(self.settings, workspace.uid, argv, check)]
        return args

    def spawn(self, workspace: Workspace) -> tuple[dict[str, str], Path]:
        return {"PATH": "/usr/bin:/bin"}, workspace.root

    def seal(self, ipc: Path) -> None:
        os.chown(ipc, 0, 0)
        os.chmod(ipc, 0o755)


def _python_dirs() -> list[str]:
    """The interpreter's and the environment's directories (outside /usr), which hold the
    standard library, ipykernel and the data packages. Not sys.path: it may name the
    server's working directory."""
    found: list[str] = []
    for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}):
        path = os.path.abspath(prefix)
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if not any(path == kept or path.startswith(kept + "/") for kept in found):
            found.append(path)
    return found


class Unsandboxed:
    """Kernels as plain processes of the server's user, in the session directory, with the
    memory and file size rlimits only. Code sees its files in the working directory, not
    under /mnt/data, and can reach the network and the whole file system."""

    name = "none"
    isolated = False

    def __init__(self, settings: CodeInterpreterSettings) -> None:
        self.settings = settings

    def unavailable(self) -> str | None:
        if not self.settings.allow_unsandboxed:
            return ("VTAI_CODE_SANDBOX=none runs model-written code without any isolation; "
                    "refusing unless VTAI_CODE_ALLOW_UNSANDBOXED=true is set as well")
        return None

    def prepare(self, workspace: Workspace) -> None:
        for path in (workspace.data, workspace.tmp):
            path.mkdir(parents=True, mode=0o700)

    def release(self, workspace: Workspace) -> None:
        shutil.rmtree(workspace.root, ignore_errors=True)

    def command(self, workspace: Workspace, ipc: Path, argv: list[str],
                check: bool = False) -> list[str]:
        return [sys.executable, str(LAUNCH_SCRIPT),
                _launch_config(self.settings, None, argv, check)]

    def spawn(self, workspace: Workspace) -> tuple[dict[str, str], Path]:
        return _kernel_env(str(workspace.tmp)), workspace.data

    def seal(self, ipc: Path) -> None:
        pass


def build_sandbox(settings: CodeInterpreterSettings) -> Bubblewrap | Unsandboxed:
    return Bubblewrap(settings) if settings.sandbox == "bwrap" else Unsandboxed(settings)
