"""Lexical search: SQLite's FTS5 (BM25 over Porter stems) or PostgreSQL's full-text search
(a tsvector column with a GIN index, ranked by cover density). A query matches chunks that
contain any of its words, stop words left out.

Ranking every chunk that holds a common word costs about a microsecond a chunk on SQLite
(five on PostgreSQL, which reads each matching row from the table), which at 100k chunks is
more than the whole budget of a search. So a word found in more chunks of the index than
its ``Limits`` allow is left to vector search: it is the rare words that tell chunks apart
(their inverse document frequency is what weighs in BM25).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, text

from vtai.server.store.db import Connection

_WORD = re.compile(r"\w+")
MAX_TERMS = 32


@dataclass(frozen=True)
class Limits:
    common: int  # chunks of the whole index: beyond, a word is too common to rank by
    budget: int  # chunks that the words of one query may match together


SQLITE_LIMITS = Limits(common=4000, budget=12_000)
POSTGRES_LIMITS = Limits(common=800, budget=2400)
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but",
    "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just",
    "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves",
})


def terms(query: str) -> list[str]:
    words = [w for w in _WORD.findall(query.lower()) if w not in STOP_WORDS]
    return list(dict.fromkeys(words))[:MAX_TERMS]


_SQLITE_COUNT = text("""
SELECT count(*) FROM (SELECT 1 FROM vector_store_chunks_fts
WHERE vector_store_chunks_fts MATCH :match LIMIT :cap)
""")
# PostgreSQL's count of the index's most common lexemes, from the column statistics that
# ANALYZE keeps (autovacuum refreshes them): how common a word is, without reading a row.
_POSTGRES_STATS = text("""
SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs,
       c.reltuples AS rows
FROM pg_stats s JOIN pg_class c ON c.relname = s.tablename AND c.relkind = 'r'
WHERE s.tablename = 'vector_store_chunks' AND s.attname = 'tsv'
""")
_LEXEME = re.compile(r"'((?:[^']|'')*)'")


def _postgres_lexemes(count: int) -> str:
    return "SELECT " + ", ".join(f"plainto_tsquery('english', :w{i})::text AS l{i}"
                                 for i in range(count))


def _postgres_counts(count: int) -> str:
    return "SELECT " + ", ".join(
        f"(SELECT count(*) FROM (SELECT 1 FROM vector_store_chunks WHERE tsv @@ "
        f"plainto_tsquery('english', :w{i}) LIMIT :cap) AS m{i}) AS c{i}" for i in range(count))


class CommonWords:
    """The statistics' counts of common lexemes, read again once a minute. A lexeme they do
    not list is in fewer chunks than the least common one they do."""

    REFRESH_SECONDS = 60.0

    def __init__(self) -> None:
        self._chunks: dict[str, float] = {}
        self.rarer_than = math.inf  # chunks of the least common listed lexeme; inf: no stats
        self._read_at = -math.inf

    async def chunks(self, conn: Connection) -> dict[str, float]:
        if time.monotonic() - self._read_at > self.REFRESH_SECONDS:
            row = (await conn.execute(_POSTGRES_STATS)).first()
            self._chunks = {} if row is None or row.elems is None else {
                lexeme: freq * row.rows
                for lexeme, freq in zip(row.elems, row.freqs, strict=False)}
            self.rarer_than = min(self._chunks.values(), default=math.inf)
            self._read_at = time.monotonic()
        return self._chunks


_SQLITE = text("""
SELECT c.id, c.file_id, -bm25(vector_store_chunks_fts) AS score FROM vector_store_chunks_fts
JOIN vector_store_chunks c ON c.id = vector_store_chunks_fts.rowid
WHERE vector_store_chunks_fts MATCH :match AND c.vector_store_id IN :stores {files}
ORDER BY score DESC LIMIT :limit
""")


def _postgres(count: int, files: str) -> str:
    # plainto_tsquery takes any text safely; || makes the words alternatives.
    query = " || ".join(f"plainto_tsquery('english', :t{i})" for i in range(count))
    return f"""
SELECT c.id, c.file_id, ts_rank_cd(c.tsv, q.query, 32) AS score
FROM vector_store_chunks c, (SELECT {query} AS query) AS q
WHERE c.tsv @@ q.query AND c.vector_store_id IN :stores {files}
ORDER BY score DESC LIMIT :limit
"""


async def _sqlite_counts(conn: Connection, words: list[str], cap: int) -> list[int]:
    counts = []
    for word in words:
        result = await conn.execute(_SQLITE_COUNT, {"match": f'"{word}"', "cap": cap})
        counts.append(int(result.scalar() or 0))
    return counts


async def _postgres_counts_of(conn: Connection, words: list[str], cap: int,
                              common: CommonWords) -> list[int]:
    """Chunks holding each word, up to ``cap``: from the statistics when the table has been
    analyzed (one statement for the words' lexemes), else counted (one more)."""
    params = {f"w{i}": w for i, w in enumerate(words)}
    row = (await conn.execute(text(_postgres_lexemes(len(words))), params)).one()
    known = await common.chunks(conn)
    counts: list[int | None] = []
    for query in row:
        lexemes = _LEXEME.findall(query or "")
        if not lexemes:
            counts.append(0)  # a stop word
        elif known:
            estimate = min(known.get(lexeme, common.rarer_than) for lexeme in lexemes)
            counts.append(min(cap, max(1, round(estimate))))
        else:
            counts.append(None)
    unknown = [i for i, count in enumerate(counts) if count is None]
    if unknown:
        found = (await conn.execute(text(_postgres_counts(len(unknown))), {
            "cap": cap, **{f"w{j}": words[i] for j, i in enumerate(unknown)}})).one()
        for i, count in zip(unknown, found, strict=True):
            counts[i] = int(count)
    return [int(c or 0) for c in counts]


async def rankable(conn: Connection, sqlite: bool, query: str,
                   common: CommonWords | None = None) -> list[str]:
    """The query's words worth ranking by: found in the index, not common, rarest first
    within the budget."""
    words = terms(query)
    if not words:
        return []
    limits = SQLITE_LIMITS if sqlite else POSTGRES_LIMITS
    cap = limits.common + 1
    counts = await _sqlite_counts(conn, words, cap) if sqlite else \
        await _postgres_counts_of(conn, words, cap, common or CommonWords())
    chosen, total = [], 0
    for count, word in sorted(zip(counts, words, strict=True)):
        if count == 0:
            continue
        if count > limits.common or total + count > limits.budget:
            break
        chosen.append(word)
        total += count
    return chosen


async def search(conn: Connection, sqlite: bool, query: str, store_ids: list[str],
                 limit: int, allowed_files: set[str] | None,
                 common: CommonWords | None = None) -> list[tuple[int, str, float]]:
    """(chunk id, file id, score) of the best ``limit`` chunks, best first."""
    if allowed_files is not None and not allowed_files:
        return []
    words = await rankable(conn, sqlite, query, common)
    if not words:
        return []
    files = "AND c.file_id IN :files" if allowed_files is not None else ""
    params: dict[str, object] = {"stores": store_ids, "limit": limit}
    if allowed_files is not None:
        params["files"] = sorted(allowed_files)
    if sqlite:
        statement = text(_SQLITE.text.format(files=files))
        params["match"] = " OR ".join(f'"{w}"' for w in words)
    else:
        statement = text(_postgres(len(words), files))
        params.update({f"t{i}": w for i, w in enumerate(words)})
    statement = statement.bindparams(bindparam("stores", expanding=True))
    if allowed_files is not None:
        statement = statement.bindparams(bindparam("files", expanding=True))
    rows = (await conn.execute(statement, params)).all()
    return [(int(row.id), str(row.file_id), float(row.score)) for row in rows]
