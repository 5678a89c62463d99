"""The lifecycle rules of DESIGN.md §2.2 and the transitions time causes, as properties."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.lifecycle import State, change_points, state_at, time_transitions
from service.core.profile import Thresholds

DAY = 86_400_000


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    new_window = draw(st.integers(1, 40)) * DAY
    silent = new_window + draw(st.integers(0, 40)) * DAY
    churn = silent + draw(st.integers(1, 100)) * DAY
    dead = churn + draw(st.integers(1, 300)) * DAY
    return Thresholds(new_window, silent, churn, dead)


times = st.integers(0, 2_000 * DAY)


def reference_state(first: int, last: int, now: int, t: Thresholds) -> str:
    idle = now - last
    if idle >= t.dead_after:
        return "dead"
    if idle >= t.churn_after:
        return "churned"
    if idle >= t.silent_after:
        return "silent"
    return "new" if now - first < t.new_window else "retained"


@settings(max_examples=300)
@given(thresholds(), times, st.integers(0, 500 * DAY), st.integers(-10 * DAY, 800 * DAY))
def test_state_is_the_design_rule(t: Thresholds, first: int, gap: int, later: int) -> None:
    last = first + gap
    now = last + later
    assert state_at(first, last, now, t).value == reference_state(first, last, now, t)


def test_boundaries_are_inclusive_of_the_threshold() -> None:
    t = Thresholds(7 * DAY, 14 * DAY, 60 * DAY, 180 * DAY)
    assert state_at(0, 0, 7 * DAY - 1, t) is State.NEW
    assert state_at(0, 0, 7 * DAY, t) is State.RETAINED
    assert state_at(0, 0, 14 * DAY, t) is State.SILENT
    assert state_at(0, 0, 60 * DAY, t) is State.CHURNED
    assert state_at(0, 0, 180 * DAY, t) is State.DEAD
    # a user active again is no longer idle, whatever their age
    assert state_at(0, 179 * DAY, 180 * DAY, t) is State.RETAINED


@settings(max_examples=300)
@given(
    thresholds(),
    times,
    st.integers(0, 300 * DAY),
    st.lists(st.integers(0, 900 * DAY), min_size=3, max_size=3),
)
def test_splitting_an_interval_neither_loses_nor_doubles_a_crossing(
    t: Thresholds, first: int, gap: int, cuts: list[int]
) -> None:
    last = first + gap
    a, b, c = sorted(first + x for x in cuts)
    whole = time_transitions(first, last, a, c, t)
    assert time_transitions(first, last, a, b, t) + time_transitions(first, last, b, c, t) == whole


@settings(max_examples=300)
@given(thresholds(), times, st.integers(0, 300 * DAY), st.integers(0, 900 * DAY), st.integers(0, 900 * DAY))
def test_transitions_chain_from_start_state_to_end_state(
    t: Thresholds, first: int, gap: int, x: int, y: int
) -> None:
    last = first + gap
    a, c = sorted((first + x, first + y))
    chain = time_transitions(first, last, a, c, t)
    state = state_at(first, last, a, t)
    for before, after in chain:
        assert before == state and after != before
        state = after
    assert state == state_at(first, last, c, t)
    # time only ever makes a user older or idler
    order = [State.NEW, State.RETAINED, State.SILENT, State.CHURNED, State.DEAD]
    assert all(order.index(b) > order.index(a_) for a_, b in chain)


@given(thresholds(), times, st.integers(0, 300 * DAY))
def test_change_points_are_the_only_moments_the_state_changes(t: Thresholds, first: int, gap: int) -> None:
    last = first + gap
    points = change_points(first, last, t)
    probes = sorted({p + d for p in points for d in (-1, 0, 1)} | {last})
    for left, right in itertools.pairwise(probes):
        if not any(left < p <= right for p in points):
            assert state_at(first, last, left, t) == state_at(first, last, right, t)
