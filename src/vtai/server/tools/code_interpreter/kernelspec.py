"""A sandboxed Python kernel for a Jupyter Kernel Gateway host: the gateway starts it as any
kernelspec, and it runs ipykernel in the same bubblewrap sandbox as local kernels (no network,
a uid of its own when the gateway runs as root, else a user namespace of its own, a
size-limited tmpfs for /mnt/data, /tmp and /dev/shm, and the memory, process and file-size
limits of VTAI_CODE_* in the gateway's environment).

    python -m vtai.server.tools.code_interpreter.kernelspec install --prefix /usr/local
    jupyter kernelgateway --KernelManager.transport=ipc --KernelGatewayApp.auth_token=...

then VTAI_CODE_GATEWAY_KERNEL=vtai-python on the servers. The gateway must use the ipc
transport (unix sockets): the sandbox has no network the gateway could reach. The kernel's
sockets are made in a directory of the sandbox's; the gateway connects through links to
descriptors this launcher opened and checked (sockets.py), not through paths the kernel
controls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vtai.server.settings import CodeInterpreterSettings
from vtai.server.tools.code_interpreter.bubblewrap import Bubblewrap
from vtai.server.tools.code_interpreter.kernel import KERNEL_ARGS
from vtai.server.tools.code_interpreter.pool import UIDS_PER_PROCESS
from vtai.server.tools.code_interpreter.sandbox import Workspace
from vtai.server.tools.code_interpreter.sockets import open_sockets

NAME = "vtai-python"
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def kernel_json() -> dict[str, object]:
    return {"argv": [sys.executable, "-m", "vtai.server.tools.code_interpreter.kernelspec",
                     "run", "{connection_file}"],
            "display_name": "Python (VT.ai sandbox)", "language": "python",
            # No signal reaches the kernel through the sandbox: interrupts are messages.
            "interrupt_mode": "message", "metadata": {}}


def install(prefix: Path, name: str = NAME) -> Path:
    """Write the kernelspec under ``prefix``/share/jupyter/kernels; returns its directory."""
    target = prefix / "share" / "jupyter" / "kernels" / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(kernel_json(), indent=1))
    return target


def run(connection_file: Path) -> int:
    """Run a sandboxed kernel for the gateway's ``connection_file``; its exit status."""
    given = json.loads(connection_file.read_text())
    if given.get("transport") != "ipc":
        sys.exit("the sandboxed kernel needs the gateway's ipc transport: start it with "
                 "--KernelManager.transport=ipc")
    settings = CodeInterpreterSettings()
    sandbox = Bubblewrap(settings)  # as root: a uid of its own; else a user namespace
    problem = sandbox.unavailable()
    if problem:
        sys.exit(f"no sandbox: {problem}")
    uid = None if sandbox.rootless else settings.uid_base + os.getpid() * UIDS_PER_PROCESS
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="vtai-k-")) / "s", uid)
    links: list[Path] = []
    try:
        sandbox.prepare(workspace)
        ipc = workspace.ipc_dir(0)
        ipc.mkdir(mode=0o700)
        connection = ipc / "kernel.json"
        connection.write_text(json.dumps({**given, "ip": str(ipc / "k")}))
        if uid is not None:
            os.chown(ipc, uid, uid)
            os.chown(connection, uid, uid)
        env, cwd = sandbox.spawn(workspace)
        command = sandbox.command(workspace, ipc, ["-f", str(connection), *KERNEL_ARGS])
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        signal.signal(signal.SIGTERM, lambda *_: process.kill())
        ports = [int(given[port]) for port in PORTS]
        fds = _wait_for_sockets(ipc, ports, process, settings.start_timeout)
        if fds is None:
            process.kill()
            return process.wait()
        sandbox.seal(ipc)
        for port, fd in zip(ports, fds, strict=True):
            link = Path(f"{given['ip']}-{port}")
            link.unlink(missing_ok=True)
            link.symlink_to(f"/proc/{os.getpid()}/fd/{fd}")
            links.append(link)
        return process.wait()
    finally:
        for link in links:
            link.unlink(missing_ok=True)
        sandbox.release(workspace)
        shutil.rmtree(workspace.root.parent, ignore_errors=True)


def _wait_for_sockets(ipc: Path, ports: list[int], process: subprocess.Popen[bytes],
                      seconds: float) -> list[int] | None:
    deadline = time.monotonic() + seconds
    names = [f"k-{port}" for port in ports]
    while process.poll() is None and time.monotonic() < deadline:
        fds = open_sockets(ipc, names)
        if fds is not None:
            return fds
        time.sleep(0.01)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("install", help="write the kernelspec")
    put.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    put.add_argument("--name", default=NAME)
    start = commands.add_parser("run", help="run a kernel (the gateway does)")
    start.add_argument("connection_file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install(args.prefix, args.name))
    else:
        sys.exit(run(args.connection_file))


if __name__ == "__main__":
    main()
