"""Code interpreter settings, read from the environment with the prefix ``VTAI_CODE_``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CodeInterpreterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTAI_CODE_", extra="ignore")

    # bwrap: each kernel in a bubblewrap sandbox (needs root and Debian's `bubblewrap`).
    # none: kernels run as the server's user with only rlimits; refused unless
    # allow_unsandboxed is true as well.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    pool_size: int = Field(default=2, ge=0, le=32)  # started kernels waiting for a thread
    # Threads with a live kernel; past it, the least recently used one is stopped.
    max_sessions: int = Field(default=32, ge=1, le=192)
    idle_seconds: float = Field(default=3600, gt=0)  # a thread's kernel is stopped after this
    timeout: float = Field(default=60, gt=0)  # wall-clock seconds per call
    cpu_seconds: float = Field(default=60, gt=0)  # CPU seconds per call
    # CPU seconds a kernel may use between calls (threads the code left running) before it
    # is stopped; its next call starts a new one.
    idle_cpu_seconds: float = Field(default=5, gt=0)
    memory_mb: int = Field(default=2048, ge=64)  # address space of each process of a session
    max_processes: int = Field(default=64, ge=8)  # processes and threads of a session's uid
    disk_mb: int = Field(default=512, ge=1)  # /mnt/data and /tmp of a session together
    # The code's output kept in a call's logs (outputs.ALLOWANCE more for notes and tracebacks).
    max_output_chars: int = Field(default=20_000, ge=100)
    max_output_files: int = Field(default=20, ge=0)  # files written per call that become Files
    max_output_images: int = Field(default=10, ge=0)  # displayed images per call kept as Files
    # What is copied out of the sandbox as Files (images and written files) lands in the
    # server's blob store: a size per file, and bytes per session (a thread's kernel).
    max_output_file_mb: int = Field(default=50, ge=1)
    max_session_output_mb: int = Field(default=200, ge=0)
    start_timeout: float = Field(default=60, gt=0)  # seconds a kernel may take to start
    # Sandboxed sessions run as uid_base + 256 * pid + n, a uid for each live session of
    # each process, so that a session's process limit and file ownership are its own. With
    # pids below 2**22 (Linux's most), uids stay below 2**32 - 1.
    uid_base: int = Field(default=2_000_000_000, ge=1000, le=3_000_000_000)
