"""Splitting a text into overlapping chunks of tokens, as OpenAI's chunking strategies do:
``auto`` is 800 tokens with 400 of overlap; ``static`` sets both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vtai.server.retrieval.tokens import Tokens

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400


@dataclass(frozen=True)
class Strategy:
    max_tokens: int
    overlap_tokens: int

    @property
    def step(self) -> int:
        return self.max_tokens - self.overlap_tokens

    @classmethod
    def from_object(cls, strategy: dict[str, Any]) -> Strategy:
        """From a vector store file's ``chunking_strategy`` (always ``static`` once stored)."""
        static = strategy["static"]
        return cls(static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])

    def to_object(self) -> dict[str, Any]:
        return {"type": "static", "static": {"max_chunk_size_tokens": self.max_tokens,
                                             "chunk_overlap_tokens": self.overlap_tokens}}


AUTO = Strategy(AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS)


@dataclass(frozen=True)
class Chunk:
    position: int
    token_start: int
    token_end: int  # exclusive
    start_char: int
    text: str

    @property
    def tokens(self) -> int:
        return self.token_end - self.token_start


def chunk(text: str, tokens: Tokens, strategy: Strategy) -> list[Chunk]:
    """Windows of ``max_tokens`` tokens, each starting ``step`` tokens after the previous one;
    the last one ends with the text. A chunk's text runs from its first token's first
    character to its last token's last character."""
    chunks: list[Chunk] = []
    total = len(tokens)
    start = 0
    while start < total:
        end = min(start + strategy.max_tokens, total)
        first = tokens.offsets[start][0]
        last = tokens.offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), start, end, first, text[first:last]))
        if end == total:
            break
        start += strategy.step
    return chunks
