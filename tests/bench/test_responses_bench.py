"""`python -m bench responses` on tiny settings: the client code runs and gives rows (no
timings are checked). llama-stack joins when its venv is installed (bench.responses.PEER_VENV);
otherwise our server alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import responses

TINY = responses.Settings(samples=3, chains=1, turns=2, levels=[1, 2], seconds=0.3,
                          turns_each=1)


@pytest.mark.timeout(300)
async def test_quick_run_gives_rows(tmp_path: Path) -> None:
    peer = responses.peer_installed()
    got = await responses.run(tmp_path, TINY, peer)

    names = ["direct", "ours", *(["llama-stack"] if peer else [])]
    for kind in (got.create, got.first_delta, got.stream_end):
        assert {name: len(kind[name]) for name in names} == dict.fromkeys(names, 3)
    assert {name: len(got.chain[name]) for name in names} == dict.fromkeys(names, 2)
    assert set(got.throughput) == {1, 2}
    assert all(got.throughput[c][name] > 0 for c in (1, 2) for name in names)
    assert set(got.cpu_ms) == {1, 2}
    assert got.errors == dict.fromkeys(names, 0)
    text = responses.report(got, peer)
    assert "create (non-streamed)" in text and "chain: last turn" in text
    assert ("ours/llama-stack" in text) == peer
