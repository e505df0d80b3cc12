"""The limit on a project's active runs: when a run's start counts them, and when it says 429."""

from __future__ import annotations

import pytest

from vtai.server.errors import TooMany
from vtai.server.services.checks import ActiveRunLimit


def test_no_limit_never_counts() -> None:
    limit = ActiveRunLimit(0)
    assert limit.to_count("p") == 0
    limit.check("p", None)


def test_counts_first_then_only_near_the_limit() -> None:
    limit = ActiveRunLimit(10, max_age=60)
    assert limit.to_count("p") == 10  # nothing known yet
    limit.check("p", 5)  # 5 active, and this run: 6
    for _ in range(2):  # 6 and 7 known: under 8 (80% of 10), no count needed
        assert limit.to_count("p") == 0
        limit.check("p", None)
    assert limit.to_count("p") == 10  # 8 known: near the limit, counted again
    limit.check("p", 2)  # others finished meanwhile: 2, and this run: 3
    assert limit.to_count("p") == 0
    assert limit.to_count("other") == 10  # projects are apart


def test_an_old_count_is_made_again() -> None:
    limit = ActiveRunLimit(10, max_age=0)
    limit.check("p", 0)
    assert limit.to_count("p") == 10


def test_at_the_limit_a_start_is_refused() -> None:
    limit = ActiveRunLimit(3, max_age=60)
    with pytest.raises(TooMany) as err:
        limit.check("p", 3)
    assert err.value.retry_after == 1
    assert limit.to_count("p") == 3  # and the next start counts again
