"""The return curve and suggested thresholds from a history with a known gap distribution."""

from __future__ import annotations

import math
import random
from bisect import bisect_right

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.batch import apply_events
from service.core.durations import DAY_MS
from service.core.events import Event
from service.core.gaps import BOUNDS_MS, TooFewReturns, gap_bucket, return_curve, suggest
from service.core.profile import load_profile

T0 = 1_700_000_000_000


@given(st.integers(0, 3 * 365 * DAY_MS))
def test_a_gap_falls_in_the_bucket_of_the_largest_boundary_below_it(gap: int) -> None:
    bucket = gap_bucket(gap)
    if gap < BOUNDS_MS[0]:
        assert bucket is None
    else:
        assert bucket is not None and BOUNDS_MS[bucket] <= gap
        assert bucket == len(BOUNDS_MS) - 1 or gap < BOUNDS_MS[bucket + 1]


@given(
    st.lists(st.integers(0, 1000), min_size=len(BOUNDS_MS), max_size=len(BOUNDS_MS)),
    st.lists(st.integers(0, 1000), min_size=len(BOUNDS_MS), max_size=len(BOUNDS_MS)),
)
def test_returns_after_d_only_shrink_as_d_grows(buckets: list[int], idle: list[int]) -> None:
    idle = sorted(idle, reverse=True)  # users idle >= d can only be fewer for a longer d
    curve = return_curve(buckets, idle)
    assert [p.returns_after for p in curve] == [sum(buckets[i:]) for i in range(len(buckets))]
    for p in curve:
        total = p.returns_after + p.still_idle
        assert p.probability == (p.returns_after / total if total else None)


def test_suggestion_from_a_known_gap_distribution_is_within_one_bucket() -> None:
    """Returners come back after an exponential gap (mean 20 days); a share never does.

    With q the share of never-returners, P(return | idle >= d) = (1-q)e^(-d/m) / ((1-q)e^(-d/m) + q),
    so it falls below x at d = m * ln((1-q)/q * (1-x)/x). The history goes through the pure
    core (`apply_events`), as the worker would apply it.
    """
    rng = random.Random(7)
    mean, never = 20 * DAY_MS, 0.3
    profile = load_profile("daily_app")
    events: list[Event] = []
    for i in range(20_000):
        uid = f"u{i}"
        events.append(Event(f"{uid}-0", uid, "visit", T0))
        if rng.random() >= never:
            events.append(Event(f"{uid}-1", uid, "visit", T0 + int(rng.expovariate(1 / mean))))
    events.sort(key=lambda e: e.ts)
    result = apply_events({}, events, T0, profile)
    buckets = [0] * len(BOUNDS_MS)
    for name, n in result.counts.items():
        if name.startswith("gap|"):
            buckets[int(name.rsplit("|", 1)[1])] += n
    # at the horizon everyone who was going to return has; the others are idle since T0
    idle = [sum(1 for r in result.records.values() if r.last_active == T0) for _ in BOUNDS_MS]
    curve = return_curve(buckets, idle)
    found = suggest(curve)
    for level, got in zip(
        (0.5, 0.2, 0.05), (found.silent_after, found.churn_after, found.dead_after), strict=True
    ):
        exact = mean * math.log((1 - never) / never * (1 - level) / level)
        expected_bucket = bisect_right(BOUNDS_MS, exact)  # the first boundary past the crossing
        got_bucket = BOUNDS_MS.index(got)
        assert abs(got_bucket - expected_bucket) <= 1, (level, got / DAY_MS, exact / DAY_MS)


def test_too_few_returns_is_refused_with_a_clear_message() -> None:
    curve = return_curve([0] * len(BOUNDS_MS), [5] * len(BOUNDS_MS))
    with pytest.raises(TooFewReturns, match="only 0 returns observed"):
        suggest(curve)
