"""Token counts: the model's tiktoken encoding once loaded (in the background), the estimate
before, for models tiktoken does not know, and after a failed load. The encoding here is a
real tiktoken Encoding built on the spot, standing in for OpenAI's (downloaded files)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import tiktoken

from vtai.server.runs import tokens
from vtai.server.runs.tokens import Tokenizers, estimate


def _small_encoding() -> tiktoken.Encoding:
    """Bytes, "word" as one token (through "wo" and "rd"), and one special token."""
    ranks = {bytes([i]): i for i in range(256)}
    ranks.update({b"wo": 256, b"rd": 257, b"word": 258})
    return tiktoken.Encoding(name="small", pat_str=r"\S+|\s+", mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 259})


def test_tiktoken_knows_openai_models_only() -> None:
    assert tokens.encoding_name("gpt-4o") == "o200k_base"
    assert tokens.encoding_name("gpt-4") == "cl100k_base"
    assert tokens.encoding_name("llama3.2") is None


def test_the_estimate_until_the_encoding_is_loaded_then_the_encoding() -> None:
    gate = threading.Event()
    loads: list[str] = []

    def load(name: str) -> Any:
        loads.append(name)
        gate.wait(5)
        return _small_encoding()

    tokenizers = Tokenizers(load, lambda model: "small" if model.startswith("gpt") else None)
    assert tokenizers.count_for("gpt-x") is estimate  # loading meanwhile
    assert tokenizers.count_for("gpt-x") is estimate  # (one load at a time)
    assert tokenizers.count_for("llama") is estimate  # no encoding known
    gate.set()
    assert tokenizers.wait_loaded("gpt-x")
    assert not tokenizers.wait_loaded("llama")
    count = tokenizers.count_for("gpt-x")
    assert count("word word word") == 5 and estimate("word word word") == 4
    # A special token's text in a message is counted as the text it is (encode() refuses it
    # by default).
    assert count("<|endoftext|>") == len("<|endoftext|>")
    assert loads == ["small"]


def test_a_failed_load_leaves_the_estimate_and_is_not_retried_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def load(name: str) -> Any:
        loads.append(name)
        raise OSError("no network")

    tokenizers = Tokenizers(load, lambda model: "small")
    assert tokenizers.count_for("gpt-x") is estimate
    assert not tokenizers.wait_loaded("gpt-x")
    assert tokenizers.count_for("gpt-x") is estimate
    assert loads == ["small"]
    monkeypatch.setattr(tokens, "RETRY_SECONDS", 0.0)  # later, it is tried again
    tokenizers.count_for("gpt-x")
    tokenizers.wait_loaded("gpt-x")
    assert loads == ["small", "small"]
