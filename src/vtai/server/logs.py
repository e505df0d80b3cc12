"""Logging: plain text, or JSON lines (VTAI_LOG_FORMAT=json) carrying the run and thread a
line is about, taken from context variables set by the executor."""

from __future__ import annotations

import faulthandler
import logging
import signal
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

run_id_var: ContextVar[str | None] = ContextVar("vtai_run_id", default=None)
thread_id_var: ContextVar[str | None] = ContextVar("vtai_thread_id", default=None)


class _RunContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        record.thread_id = thread_id_var.get()
        return True


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RunContext())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(run_id)s %(thread_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # `kill -USR1 PID` writes every thread's stack to stderr (the log): what a stuck process
    # is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpx2", "httpcore"):  # one line per upstream call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
