"""Tokens: chunk sizes are counted in the local embedding model's WordPiece tokens.

OpenAI counts chunk tokens with its own BPE tokenizer, whose files cannot be assumed offline;
for English text the two counts are close. The tokenizer file ships with this package
(``data/minilm-tokenizer.json``, checked against its pinned sha256 when loaded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
from tokenizers import Tokenizer

from vtai.server.retrieval import modelfiles

_lock = threading.Lock()


@dataclass(frozen=True)
class Tokens:
    """A text's tokens: WordPiece ids and each token's (start, end) characters in the text."""

    ids: np.ndarray  # int64, shape (n,)
    offsets: list[tuple[int, int]]  # as the tokenizer gives them: converting costs more

    def __len__(self) -> int:
        return len(self.ids)


@cache
def tokenizer() -> Tokenizer:
    with _lock:
        loaded = Tokenizer.from_file(str(modelfiles.tokenizer_file()))
        loaded.no_truncation()
        loaded.no_padding()
        return loaded


def tokenize(text: str) -> Tokens:
    encoding = tokenizer().encode(text, add_special_tokens=False)
    return Tokens(ids=np.asarray(encoding.ids, dtype=np.int64), offsets=encoding.offsets)


def count(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)
