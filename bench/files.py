"""File bytes: upload and download of 1 MB and 50 MB files over HTTP, with the bytes on disk
(SQLite: files under the data dir) and in PostgreSQL (rows of ``blob_chunks``), side by side.

    PYTHONPATH=. .venv/bin/python -m bench.files [--repeat 5]

Each backend gets a `vtai serve` of its own (and a fresh PostgreSQL database); each size is
uploaded ``--repeat`` times, then each upload is downloaded once, one request at a time with
httpx. The table gives medians, and the server's peak resident memory (VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from tests.support import ServerProcess, postgres_database

SIZES = {"1 MB": 1_000_000, "50 MB": 50_000_000}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(backend: str, repeat: int, tmp: Path) -> tuple[dict[str, tuple[float, float]], float]:
    """size -> (median upload s, median download s), and the server's peak RSS in MB."""
    with ExitStack() as stack:
        env = {}
        if backend == "postgres":
            env["VTAI_DATABASE_URL"] = stack.enter_context(postgres_database())
        server = ServerProcess(tmp / backend, env).start()
        stack.callback(server.stop)
        results = {}
        with httpx.Client(base_url=server.base_url, timeout=300) as http:
            for label, size in SIZES.items():
                data = os.urandom(size)
                ups, downs, file_ids = [], [], []
                for _ in range(repeat):
                    started = time.perf_counter()
                    response = http.post("/files", data={"purpose": "assistants"},
                                         files={"file": ("bench.bin", data)})
                    ups.append(time.perf_counter() - started)
                    response.raise_for_status()
                    file_ids.append(response.json()["id"])
                for file_id in file_ids:
                    started = time.perf_counter()
                    received = 0
                    with http.stream("GET", f"/files/{file_id}/content") as download:
                        for piece in download.iter_raw():
                            received += len(piece)
                    downs.append(time.perf_counter() - started)
                    assert received == size, (received, size)
                results[label] = (statistics.median(ups), statistics.median(downs))
        assert server.proc is not None
        return results, _peak_rss_mb(server.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.files")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        measured = {backend: measure(backend, args.repeat, Path(tmp))
                    for backend in ("sqlite", "postgres")}
    print("| size | disk (SQLite) upload | disk download | PostgreSQL upload | "
          "PostgreSQL download |")
    print("| --- | --- | --- | --- | --- |")
    for label, size in SIZES.items():
        cells = []
        for backend in ("sqlite", "postgres"):
            up, down = measured[backend][0][label]
            cells += [f"{up * 1000:.0f} ms ({size / up / 1e6:.0f} MB/s)",
                      f"{down * 1000:.0f} ms ({size / down / 1e6:.0f} MB/s)"]
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"\nserver peak RSS: disk {measured['sqlite'][1]:.0f} MB, "
          f"PostgreSQL {measured['postgres'][1]:.0f} MB")


if __name__ == "__main__":
    main()
