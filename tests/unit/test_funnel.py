"""The core path funnel: furthest stage reached, monotone stage counts, nth occurrences, conversion."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.funnel import conversion, furthest_stage
from service.core.profile import FunnelStage, load_profile, parse_profile

SETTINGS = settings(max_examples=200, deadline=None)

SHOP = parse_profile(
    {
        "lifecycle": {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"},
        "funnel": [
            {"name": "visit", "event": "visit"},
            {"name": "register", "event": "register"},
            {"name": "verify", "event": "verify"},
            {"name": "first_order", "event": "order"},
            {"name": "repurchase", "event": "order", "nth": 2},
            {"name": "loyal", "event": "order", "nth": 5},
        ],
    }
).funnel
TYPES = ["visit", "register", "verify", "order", "renew", "message_click"]


def reference_stage(counts: Counter[str], funnel: tuple[FunnelStage, ...]) -> int:
    reached = [i for i, s in enumerate(funnel) if counts[s.event] >= s.nth]
    return max(reached, default=-1)


def stage_counts(users: list[Counter[str]], funnel: tuple[FunnelStage, ...]) -> list[int]:
    """Users counted at every stage up to the furthest they reached."""
    out = [0] * len(funnel)
    for counts in users:
        for k in range(furthest_stage(counts, funnel) + 1):
            out[k] += 1
    return out


def test_no_events_is_no_stage() -> None:
    assert furthest_stage({}, SHOP) == -1
    assert furthest_stage({"message_click": 3}, SHOP) == -1


@pytest.mark.parametrize(
    ("counts", "stage"),
    [
        ({"visit": 1}, 0),
        ({"visit": 9}, 0),
        ({"visit": 1, "register": 1}, 1),
        ({"visit": 1, "register": 1, "verify": 1}, 2),
        ({"visit": 1, "register": 1, "verify": 1, "order": 1}, 3),
        ({"visit": 1, "register": 1, "verify": 1, "order": 2}, 4),  # repurchase = the 2nd order
        ({"order": 4}, 4),
        ({"order": 5}, 5),
        ({"order": 1}, 3),  # a first order without a visit still reaches first_order
        ({"register": 1}, 1),
    ],
)
def test_furthest_stage(counts: dict[str, int], stage: int) -> None:
    assert furthest_stage(counts, SHOP) == stage


def test_repurchase_needs_a_second_order() -> None:
    funnel = load_profile("fintech").funnel
    names = [s.name for s in funnel]
    assert funnel[furthest_stage({"order": 1}, funnel)].name == "first_order"
    assert funnel[furthest_stage({"order": 2}, funnel)].name == "repurchase"
    assert names.index("repurchase") == names.index("first_order") + 1


def test_the_insurance_funnel_ends_with_renewal() -> None:
    funnel = load_profile("insurance").funnel
    assert funnel[furthest_stage({"visit": 1, "order": 3}, funnel)].name == "first_order"
    assert funnel[furthest_stage({"renew": 1}, funnel)].name == "renewal"


def _counts(code: int) -> Counter[str]:
    """Counts of 0..7 per type from one integer (cheap to generate; shrinks to no events)."""
    out: Counter[str] = Counter()
    for etype in TYPES:
        code, n = divmod(code, 8)
        if n:
            out[etype] = n
    return out


counts_strategy = st.integers(0, 8 ** len(TYPES) - 1).map(_counts)


@SETTINGS
@given(counts_strategy)
def test_furthest_stage_is_the_last_stage_reached(counts: Counter[str]) -> None:
    assert furthest_stage(counts, SHOP) == reference_stage(counts, SHOP)


@SETTINGS
@given(counts_strategy, st.sampled_from(TYPES))
def test_another_event_never_moves_a_user_back(counts: Counter[str], etype: str) -> None:
    before = furthest_stage(counts, SHOP)
    counts[etype] += 1
    assert furthest_stage(counts, SHOP) >= before


@SETTINGS
@given(st.lists(st.sampled_from(TYPES), max_size=20))
def test_the_stage_along_a_history_only_grows(history: list[str]) -> None:
    counts: Counter[str] = Counter()
    stages = []
    for etype in history:
        counts[etype] += 1
        stages.append(furthest_stage(counts, SHOP))
    assert stages == sorted(stages)


@SETTINGS
@given(st.lists(counts_strategy, max_size=30))
def test_stage_counts_are_monotone(users: list[Counter[str]]) -> None:
    counts = stage_counts(users, SHOP)
    assert all(a >= b for a, b in itertools.pairwise(counts))
    assert counts[0] == sum(1 for u in users if furthest_stage(u, SHOP) >= 0)
    for k, n in enumerate(counts):
        assert n == sum(1 for u in users if reference_stage(u, SHOP) >= k)


@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=5), st.integers(0, 10))
def test_nth_occurrence(nths: list[int], orders: int) -> None:
    funnel = tuple(FunnelStage(f"s{i}", "order", n) for i, n in enumerate(sorted(set(nths))))
    want = max((i for i, s in enumerate(funnel) if orders >= s.nth), default=-1)
    assert furthest_stage({"order": orders}, funnel) == want


def test_conversion_between_stages() -> None:
    assert conversion([]) == [None]
    assert conversion([10]) == [None]
    assert conversion([100, 50, 25, 0, 0]) == [None, 0.5, 0.5, 0.0, None]
    assert conversion([0, 0]) == [None, None]
    assert conversion([8, 2]) == [None, 0.25]


@SETTINGS
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_conversion_is_each_stage_over_the_previous(users: list[int]) -> None:
    got = conversion(users)
    assert len(got) == len(users)
    assert got[0] is None
    for i in range(1, len(users)):
        if users[i - 1] == 0:
            assert got[i] is None
        else:
            assert got[i] == users[i] / users[i - 1]


@SETTINGS
@given(st.lists(counts_strategy, min_size=1, max_size=30))
def test_conversion_of_monotone_counts_is_a_rate(users: list[Counter[str]]) -> None:
    for rate in conversion(stage_counts(users, SHOP))[1:]:
        assert rate is None or 0.0 <= rate <= 1.0
