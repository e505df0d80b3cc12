"""The first code to run inside a sandbox: limits, then an unprivileged uid, then the kernel.

Run by path (``python launch.py CONFIG_JSON``), not as a module of the package, so that the
server's own modules are never imported where user code runs. Only the standard library and
ipykernel are used. CONFIG_JSON: {"limits": {"RLIMIT_AS": bytes, ...}, "uid": int | null,
"argv": [ipykernel arguments], "check": bool, "site_dirs": [directories of packages, when
the interpreter runs by another path than its own]}.
"""

import importlib.util
import json
import os
import resource
import site
import sys
from typing import Any


def main() -> None:
    config = json.loads(sys.argv[1])
    for directory in config.get("site_dirs", []):
        site.addsitedir(directory)
    for name, value in config["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    # When the host runs short of memory, the kernel and what it starts go before anything
    # else on the machine, and above all before the server.
    if os.path.exists("/proc/self/oom_score_adj"):
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if config["check"]:
        if importlib.util.find_spec("ipykernel") is None:
            sys.exit("ipykernel is not installed in the server's Python environment")
        return
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(config["argv"])
    keep_order(sys.stdout, sys.stderr)
    app.start()


def keep_order(*streams: Any) -> None:
    """What the code writes to stdout and stderr reaches the client in the order written:
    ipykernel buffers each stream apart, and may send the later one first (print('out')
    then print('oops', file=sys.stderr) came out as 'oops', 'out'). A write to one stream
    first flushes the other, if it was the one written last."""
    last: list[Any] = [None]
    for stream in streams:
        def ordered(text: str, stream: Any = stream, write: Any = stream.write) -> Any:
            if last[0] is not None and last[0] is not stream:
                last[0].flush()
            last[0] = stream
            return write(text)
        stream.write = ordered


if __name__ == "__main__":
    main()
