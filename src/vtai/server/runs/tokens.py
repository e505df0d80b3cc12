"""Counting a model's tokens: with its own tokenizer when tiktoken knows the model and can
load its encoding, else an estimate.

tiktoken maps OpenAI's model names (gpt-4o, gpt-4.1, o3, ...) to their encodings; the
encoding's file comes from OpenAI's servers the first time, or from ``TIKTOKEN_CACHE_DIR``
when it was saved there beforehand (for machines without network access). It is loaded once
per encoding, in a thread of its own, so no request waits for the download: until it is
there (or if it cannot be had), counts are the estimate. A failed load is tried again after
``RETRY_SECONDS``. Models tiktoken does not know (llama3.2, qwen, ...) always get the
estimate: one token per four characters, close to what BPE tokenizers give for English text.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import tiktoken  # (imported with the server, not in its first run: tens of milliseconds)

log = logging.getLogger("vtai.runs")

Count = Callable[[str], int]
RETRY_SECONDS = 600.0


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def encoding_name(model: str) -> str | None:
    """The name of ``model``'s tiktoken encoding; None for a model tiktoken does not know."""
    try:
        return str(tiktoken.encoding_name_for_model(model))
    except KeyError:
        return None


def _load_encoding(name: str) -> Any:
    return tiktoken.get_encoding(name)


class Tokenizers:
    """The token count for each model, as good as what is loaded so far."""

    def __init__(self, load: Callable[[str], Any] = _load_encoding,
                 encoding_name: Callable[[str], str | None] = encoding_name) -> None:
        self._load = load
        self._encoding_name = encoding_name
        self._names: dict[str, str | None] = {}  # model -> its encoding's name (None: none)
        self._counts: dict[str, Count] = {}  # encoding name -> its count, once loaded
        self._loading: set[str] = set()
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def count_for(self, model: str) -> Count:
        """The count for ``model``: its tokenizer's if loaded (else its load is started, in
        the background), the estimate meanwhile and for models without one."""
        if model not in self._names:
            self._names[model] = self._encoding_name(model)
        name = self._names[model]
        if name is None:
            return estimate
        count = self._counts.get(name)
        if count is not None:
            return count
        self._start_loading(name)
        return estimate

    def _start_loading(self, name: str) -> None:
        with self._lock:
            failed_at = self._failed_at.get(name)
            if name in self._loading or (
                    failed_at is not None and time.monotonic() - failed_at < RETRY_SECONDS):
                return
            self._loading.add(name)
        # A daemon thread: a download that hangs holds neither a request nor the shutdown.
        threading.Thread(target=self._load_now, args=(name,), daemon=True,
                         name=f"vtai-tokenizer-{name}").start()

    def _load_now(self, name: str) -> None:
        try:
            encoding = self._load(name)
        except Exception as err:
            log.warning("token counts for %s use an estimate: its tiktoken encoding could not "
                        "be loaded (%s); set TIKTOKEN_CACHE_DIR to a directory holding it for "
                        "machines without network access", name, err)
            with self._lock:
                self._failed_at[name] = time.monotonic()
                self._loading.discard(name)
            return

        def count(text: str) -> int:
            return len(encoding.encode(text, disallowed_special=()))

        with self._lock:
            self._counts[name] = count  # (read without the lock: one store, atomic)
            self._loading.discard(name)

    def wait_loaded(self, model: str, timeout: float = 10.0) -> bool:
        """Whether ``model``'s tokenizer is loaded, waiting up to ``timeout`` seconds for a
        load under way (for tests and tools; a request never waits)."""
        deadline = time.monotonic() + timeout
        while True:
            name = self._names.get(model) or self._encoding_name(model)
            if name is not None and name in self._counts:
                return True
            if name is None or name not in self._loading or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
