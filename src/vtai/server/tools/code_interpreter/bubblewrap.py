"""Kernels in bubblewrap sandboxes: new network, pid, ipc, uts and cgroup namespaces,
read-only system and Python directories, and a size-limited tmpfs (the session's disk) for
/mnt/data, /tmp and /dev/shm. Two modes, by who runs the server:

- root: each session's tmpfs is mounted on the host (so it outlives a kernel restart), and
  each session runs as a uid of its own (``uid_base + n``): its process limit and its files
  are its own;
- rootless (any other user): each kernel gets a user namespace of its own (no nested ones),
  its tmpfs is made inside the sandbox (it ends with the kernel), and its processes are
  counted per user namespace for the process limit. The server reaches its files through
  /proc/PID/root and its sockets through descriptors it checked.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
from pathlib import Path

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter import mounts
from vtai.server.tools.code_interpreter.sandbox import (
    LAUNCH_SCRIPT,
    SANDBOX_DATA,
    Workspace,
    kernel_env,
    launch_config,
)

_SANDBOX_LAUNCH = "/opt/vtai/launch.py"
_SANDBOX_PYTHON = "/opt/vtai/python"
# What programs and shared libraries need from /etc; never passwd, shadow or the like.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/etc/alternatives", "/etc/fonts", "/etc/mime.types")
_MAX_SOCKET_PATH = 100  # unix socket paths are at most 107 bytes; ZMQ adds "-N"
# Rootless: one tmpfs on /mnt holds the session's disk; /tmp and /dev/shm lead into it.
_DISK = "/mnt"
_DISK_TMP = "/mnt/.tmp"
_DISK_SHM = "/mnt/.shm"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
_USERNS_HINT = ("user namespaces are not permitted for this user (check the sysctls "
                "user.max_user_namespaces, kernel.unprivileged_userns_clone and "
                "kernel.apparmor_restrict_unprivileged_userns), or run the server as root")


class Bubblewrap:
    name = "bubblewrap"
    isolated = True

    def __init__(self, settings: CodeInterpreterSettings, rootless: bool | None = None
                 ) -> None:
        self.settings = settings
        self.bwrap = shutil.which("bwrap")
        self.rootless = os.geteuid() != 0 if rootless is None else rootless
        self.shares_uid = self.rootless
        self.keeps_files = not self.rootless
        self.name = "bubblewrap (rootless)" if self.rootless else "bubblewrap"

    def unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "bubblewrap sandboxes need Linux"
        if self.bwrap is None:
            return ("the bwrap command is not installed (Debian/Ubuntu: sudo apt-get install "
                    "bubblewrap; Fedora: sudo dnf install bubblewrap)")
        return None

    def failure_hint(self, output: str) -> str:
        """What to do when the sandbox's probe failed with ``output``."""
        if self.rootless and ("namespace" in output or "Operation not permitted" in output):
            return f"; {_USERNS_HINT}"
        return ""

    def prepare(self, workspace: Workspace) -> None:
        if len(str(workspace.ipc_dir(0))) + 8 > _MAX_SOCKET_PATH:
            raise OSError(f"the data directory path is too long for kernel sockets: "
                          f"{workspace.root}")
        if self.rootless:
            workspace.root.mkdir(parents=True, mode=0o700)
            if not os.access(sys.executable, os.X_OK):
                # (read through this process's own link to it: no directory is walked)
                shutil.copyfile("/proc/self/exe", _own_copy(workspace))
                os.chmod(_own_copy(workspace), 0o755)
            return
        assert workspace.uid is not None
        workspace.root.mkdir(parents=True)
        mounts.mount_tmpfs(workspace.root, self.settings.disk_mb * 1024 * 1024)
        for path in (workspace.data, workspace.tmp, workspace.shm):
            path.mkdir(mode=0o700)
            os.chown(path, workspace.uid, workspace.uid)

    def release(self, workspace: Workspace) -> None:
        if not self.rootless:
            for point in mounts.mounts_under(workspace.root):
                mounts.unmount(point)
        shutil.rmtree(workspace.root, ignore_errors=True)

    def command(self, workspace: Workspace, ipc: Path, argv: list[str],
                check: bool = False) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-net",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--clearenv"]
        if self.rootless:
            # A user namespace of its own: its processes are counted apart for
            # RLIMIT_NPROC, and it may not make more (a kernel exploit's usual first step).
            args += ["--unshare-user", "--disable-userns"]
        for key, value in kernel_env("/tmp").items():
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
        args += ["--proc", "/proc"]
        if self.rootless:
            # /dev by hand, as --dev makes it but with /dev/shm leading into the session's
            # tmpfs (--dev makes it a directory no symlink may replace).
            args += ["--perms", "0755", "--dir", "/dev"]
            for device in _DEVICES:
                args += ["--dev-bind-try", f"/dev/{device}", f"/dev/{device}"]
            for link, target in _DEV_LINKS:
                args += ["--symlink", target, f"/dev/{link}"]
            args += ["--size", str(self.settings.disk_mb * 1024 * 1024), "--tmpfs", _DISK]
            for path in (SANDBOX_DATA, _DISK_TMP, _DISK_SHM):
                args += ["--perms", "0700", "--dir", path]
            # Relative links: bwrap makes what follows (a directory under /tmp) before the
            # new root is /, where an absolute link would lead elsewhere.
            args += ["--symlink", _DISK_TMP.lstrip("/"), "/tmp",
                     "--symlink", "../" + _DISK_SHM.lstrip("/"), "/dev/shm"]
            made.update({"/dev", _DISK, SANDBOX_DATA, "/tmp", "/dev/shm"})
        else:
            args += ["--dev", "/dev"]
            parents(SANDBOX_DATA)
            args += ["--bind", str(workspace.data), SANDBOX_DATA,
                     "--bind", str(workspace.tmp), "/tmp",
                     "--bind", str(workspace.shm), "/dev/shm"]
            made.update({"/tmp", "/dev", "/dev/shm"})
        # After /tmp: a Python installed under /tmp (a virtualenv there) stays visible.
        for path in python_dirs():
            parents(path)
            args += ["--ro-bind", path, path]
        parents(_SANDBOX_LAUNCH)
        args += ["--ro-bind", str(LAUNCH_SCRIPT), _SANDBOX_LAUNCH]
        python, site_dirs = sys.executable, []
        if self.rootless and _own_copy(workspace).exists():
            # The interpreter lies below a directory this user may not open (a Python
            # installed in root's home, say): a copy of it, with the standard library and
            # the environment's packages named to it.
            python = _SANDBOX_PYTHON
            args += ["--ro-bind", str(_own_copy(workspace)), python,
                     "--setenv", "PYTHONHOME", f"{sys.base_prefix}:{sys.base_exec_prefix}"]
            site_dirs = site.getsitepackages()
        # The kernel's sockets are reached by the server at the same path as inside.
        parents(str(ipc))
        args += ["--bind", str(ipc), str(ipc)]
        if self.rootless:
            # The root bwrap made belongs to the kernel's uid: read-only, so that nothing is
            # written outside the session's tmpfs (its disk limit).
            args += ["--remount-ro", "/"]
        uid = None if self.rootless else workspace.uid
        args += ["--chdir", SANDBOX_DATA, python, _SANDBOX_LAUNCH,
                 launch_config(self.settings, uid, argv, check, per_namespace=self.rootless,
                               site_dirs=site_dirs)]
        return args

    def spawn(self, workspace: Workspace) -> tuple[dict[str, str], Path]:
        return {"PATH": "/usr/bin:/bin"}, workspace.root

    def seal(self, ipc: Path) -> None:
        if not self.rootless:
            os.chown(ipc, 0, 0)
            os.chmod(ipc, 0o755)

    def data_dir(self, workspace: Workspace, kernel_pid: int) -> Path:
        if self.rootless:
            # The sandbox's own root: the tmpfs is in its mount namespace only. /mnt is a
            # mount point there and /mnt/data is opened without following a link (files.py).
            return Path(f"/proc/{kernel_pid}/root{SANDBOX_DATA}")
        return workspace.data


def _own_copy(workspace: Workspace) -> Path:
    return workspace.root / "python"


def python_dirs() -> list[str]:
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
