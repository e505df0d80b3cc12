"""Deterministic embeddings that behave enough like real ones for retrieval tests.

A text becomes a hashed bag of features: each lowercased word (weight 1) and each character
trigram of each word (weight 0.25) adds +-weight to one dimension chosen by a stable hash, and
the vector is L2-normalised. Texts sharing words therefore have a high cosine similarity, texts
sharing only word fragments a small one, unrelated texts about zero.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import re
import sys
from functools import lru_cache

from .chat import count_tokens

DEFAULT_DIMENSIONS = 384
MAX_DIMENSIONS = 8192
_WORD = re.compile(r"\w+")
_TRIGRAM_WEIGHT = 0.25


@lru_cache(maxsize=1 << 16)
def _feature_hash(feature: str) -> int:
    # blake2b rather than hash(): vectors must be the same in every process and on every run.
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


def _add(vector: list[float], feature: str, weight: float) -> None:
    h = _feature_hash(feature)
    vector[h % len(vector)] += weight if h >> 63 else -weight


def _features(text: str) -> list[tuple[str, float]]:
    features: list[tuple[str, float]] = []
    for word in _WORD.findall(text.lower()):
        features.append(("w:" + word, 1.0))
        padded = f"#{word}#"
        features.extend(("t:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return features


def embed(item: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The unit vector for a text, or for a list of token ids (each id is one feature)."""
    if isinstance(item, str):
        features = _features(item)
    else:
        features = [(f"id:{token}", 1.0) for token in item]
    # An empty input still gets a unit vector, so cosine similarity never divides by zero.
    features = features or [("empty", 1.0)]
    vector = [0.0] * dimensions
    for feature, weight in features:
        _add(vector, feature, weight)
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # every feature cancelled out
        vector[_feature_hash("empty") % dimensions] = norm = 1.0
    return array.array("f", [x / norm for x in vector]).tolist()


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format="base64"`: little-endian float32 bytes, base64-encoded."""
    packed = array.array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def parse_input(value: object) -> list[str | list[int]]:
    """Normalise OpenAI's `input`: a string, strings, token ids or lists of token ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return list(value)
    raise ValueError(
        "'input' must be a string, a non-empty list of strings, a list of token ids "
        "or a list of lists of token ids"
    )


def input_tokens(item: str | list[int]) -> int:
    return count_tokens(item) if isinstance(item, str) else len(item)
