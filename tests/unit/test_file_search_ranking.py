"""Rank fusion, attribute filters and citation markers."""

from __future__ import annotations

from vtai.server.retrieval.filters import matches
from vtai.server.retrieval.lexical import terms
from vtai.server.retrieval.search import combine
from vtai.server.tools.file_search import citations


def test_fusion_weighs_similarity_and_words() -> None:
    files = {1: "a", 2: "b", 3: "c"}
    lexical_hits = [(1, "a", 8.0), (3, "c", 2.0)]
    cosines = {1: 0.1, 2: 0.6, 3: -0.2}
    hybrid = combine(lexical_hits, cosines, files, "hybrid")
    # a close paraphrase beats a chunk that only shares a word with the query
    assert hybrid[2] > hybrid[1] > hybrid[3] >= 0
    assert combine(lexical_hits, cosines, files, "lexical") == {1: 1.0, 2: 0.0, 3: 0.25}
    assert combine(lexical_hits, cosines, files, "vector") == {1: 0.1, 2: 0.6, 3: 0.0}
    both = combine([(1, "a", 3.0)], {1: 1.0}, {1: "a"}, "hybrid")
    assert both[1] == 1.0  # best on both counts: the top score


def test_filters() -> None:
    attrs = {"author": "ada", "year": 2021, "draft": False, "tags": "x"}
    assert matches({"type": "eq", "key": "author", "value": "ada"}, attrs)
    assert not matches({"type": "eq", "key": "year", "value": "2021"}, attrs)
    assert matches({"type": "gte", "key": "year", "value": 2021}, attrs)
    assert not matches({"type": "gt", "key": "author", "value": 3}, attrs)
    assert matches({"type": "in", "key": "author", "value": ["ada", "grace"]}, attrs)
    assert matches({"type": "nin", "key": "year", "value": [2020, 2022]}, attrs)
    assert matches({"type": "ne", "key": "draft", "value": True}, attrs)
    assert not matches({"type": "eq", "key": "missing", "value": 1}, attrs)
    assert not matches({"type": "ne", "key": "missing", "value": 1}, attrs)
    compound = {"type": "and", "filters": [
        {"type": "eq", "key": "author", "value": "ada"},
        {"type": "or", "filters": [{"type": "lt", "key": "year", "value": 2000},
                                   {"type": "eq", "key": "draft", "value": False}]}]}
    assert matches(compound, attrs)
    assert not matches(compound, {**attrs, "draft": True})


def test_query_terms_drop_stop_words() -> None:
    assert terms("What is the return policy for returns?") == ["return", "policy", "returns"]
    assert terms("the of and") == []


def test_citations_map_markers_to_files() -> None:
    calls = [{"id": "call_a", "type": "file_search", "file_search": {"results": [
        {"file_id": "file-1", "file_name": "one.txt", "score": 1.0},
        {"file_id": "file-2", "file_name": "two.txt", "score": 0.5}]}}]
    second = citations.marker("call_a", 1, "two.txt")
    text = f"Alpha {citations.marker('call_a', 0, 'one.txt')} and beta {second}."
    found = citations.find_annotations(text, calls)
    assert [a["file_citation"]["file_id"] for a in found] == ["file-1", "file-2"]
    assert all(text[a["start_index"]:a["end_index"]] == a["text"] for a in found)
    # a marker with wrong numbers still resolves by its file name
    assert citations.find_annotations("See 【999:7†two.txt】", calls)[0][
        "file_citation"]["file_id"] == "file-2"
    assert citations.find_annotations("See 【1:0†nowhere.txt】", calls) == []
