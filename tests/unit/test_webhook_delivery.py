"""The webhook relay's pure decisions: verdicts, Retry-After, backoff, commit offsets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.webhook_delivery import (
    TIMEOUT,
    OffsetTracker,
    Verdict,
    backoff,
    check_url,
    retry_after,
    status_class,
    verdict,
)


def test_verdicts() -> None:
    assert verdict(204, 1, 5) is Verdict.DELIVERED
    assert verdict(500, 1, 5) is Verdict.RETRY
    assert verdict(429, 4, 5) is Verdict.RETRY
    assert verdict(TIMEOUT, 2, 5) is Verdict.RETRY
    assert verdict(503, 5, 5) is Verdict.DEAD
    assert verdict(400, 1, 5) is Verdict.DEAD
    assert verdict(410, 1, 5) is Verdict.DEAD
    assert status_class(TIMEOUT) == "timeout"
    assert status_class(429) == "4xx"


def test_retry_after_is_bounded() -> None:
    assert retry_after("3", 0.0, 30.0) == 3.0
    assert retry_after("86400", 0.0, 30.0) == 30.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0, 30.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0, 30.0) == 0.0
    assert retry_after("soon", 0.0, 30.0) is None
    assert retry_after("9" * 100, 0.0, 30.0) is None
    assert retry_after(None, 0.0, 30.0) is None


@given(st.integers(1, 100), st.integers(0, 2**32))
def test_backoff_within_bounds(attempt: int, seed: int) -> None:
    wait = backoff(attempt, 0.1, 5.0, random.Random(seed))
    assert 0.0 <= wait <= min(5.0, 0.1 * 2 ** (attempt - 1))
    assert backoff(attempt, 0.1, 5.0, random.Random(seed), asked=2.0) >= min(2.0, 5.0)


@given(st.permutations(list(range(20))), st.integers(1, 19))
def test_commit_offset_is_lowest_unfinished(order: list[int], done: int) -> None:
    tracker = OffsetTracker(next_commit=0)
    finished: set[int] = set()
    last = 0
    for offset in order[:done]:
        moved = tracker.finish(offset)
        finished.add(offset)
        expected = min(set(range(21)) - finished)
        if moved is not None:
            assert moved > last
            last = moved
        assert tracker.next_commit == expected


def test_url_must_be_https_unless_loopback_or_allowed() -> None:
    assert check_url("https://hooks.example.com/in", False)
    assert check_url("http://127.0.0.1:9000/in", False)
    assert check_url("http://[::1]/in", False)
    assert check_url("http://localhost/in", False)
    assert check_url("http://hooks.internal/in", True)
    for bad in ("http://hooks.example.com/in", "ftp://x/y", "not a url", "https://u:p@x.com/"):
        with pytest.raises(ValueError):
            check_url(bad, False)
