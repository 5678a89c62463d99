"""Lifecycle stages and the transitions the passing of time causes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.lifecycle import (
    INACTIVE,
    STATES,
    State,
    Thresholds,
    ThresholdsError,
    change_points,
    classifier,
    entered_at,
    last_active_range,
    new_since,
    state_at,
    time_transitions,
    validate_thresholds,
)
from service.core.profile import load_profile, parse_profile

HOUR = 3_600_000
DAY = 24 * HOUR
ORDER = [State.NEW, State.RETAINED, State.SILENT, State.CHURNED, State.DEAD]
SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    """Valid thresholds on a small scale, so that generated times hit every boundary exactly."""
    new_window = draw(st.integers(1, 30))
    silent = new_window + draw(st.integers(0, 30))
    churn = silent + draw(st.integers(1, 30))
    dead = churn + draw(st.integers(1, 60))
    return Thresholds(new_window, silent, churn, dead)


@st.composite
def user_times(draw: st.DrawFn) -> tuple[int, int]:
    first = draw(st.integers(-50, 200))
    return first, first + draw(st.integers(0, 150))


clock = st.integers(-100, 500)


def design_rule(first_seen: int, last_active: int, now: int, t: Thresholds) -> str:
    """The definition of a stage, restated independently of `state_at`."""
    idle = now - last_active
    if idle >= t.dead_after:
        return "dead"
    if idle >= t.churn_after:
        return "churned"
    if idle >= t.silent_after:
        return "silent"
    if now - first_seen < t.new_window:
        return "new"
    return "retained"


def test_states_and_inactive_states() -> None:
    assert [s.value for s in STATES] == ["new", "retained", "silent", "churned", "dead"]
    assert {State.SILENT, State.CHURNED, State.DEAD} == INACTIVE


@SETTINGS
@given(thresholds(), user_times(), clock)
def test_state_at_is_the_design_rule(t: Thresholds, times: tuple[int, int], now: int) -> None:
    first, last = times
    got = state_at(first, last, now, t)
    assert isinstance(got, State)
    assert got.value == design_rule(first, last, now, t)


@SETTINGS
@given(
    st.integers(1, 40 * DAY),
    st.integers(0, 40 * DAY),
    st.integers(1, 100 * DAY),
    st.integers(1, 400 * DAY),
    st.integers(946_684_800_000, 4_102_444_800_000),
    st.integers(0, 400 * DAY),
    st.integers(-DAY, 900 * DAY),
)
def test_state_at_is_the_design_rule_at_real_scale(
    nw: int, silent_extra: int, churn_extra: int, dead_extra: int, first: int, gap: int, later: int
) -> None:
    t = Thresholds(
        nw, nw + silent_extra, nw + silent_extra + churn_extra, nw + silent_extra + churn_extra + dead_extra
    )
    last = first + gap
    now = last + later
    assert state_at(first, last, now, t).value == design_rule(first, last, now, t)


def test_boundaries_belong_to_the_later_state() -> None:
    t = Thresholds(2 * DAY, 3 * DAY, 7 * DAY, 20 * DAY)
    assert state_at(0, 0, 0, t) is State.NEW
    assert state_at(0, 0, 2 * DAY - 1, t) is State.NEW
    assert state_at(0, 0, 2 * DAY, t) is State.RETAINED
    assert state_at(0, 0, 3 * DAY - 1, t) is State.RETAINED
    assert state_at(0, 0, 3 * DAY, t) is State.SILENT
    assert state_at(0, 0, 7 * DAY - 1, t) is State.SILENT
    assert state_at(0, 0, 7 * DAY, t) is State.CHURNED
    assert state_at(0, 0, 20 * DAY - 1, t) is State.CHURNED
    assert state_at(0, 0, 20 * DAY, t) is State.DEAD
    assert state_at(0, 0, 10**6 * DAY, t) is State.DEAD
    # idleness decides before age: a young user who goes quiet is silent, not new
    young = Thresholds(3 * DAY, 3 * DAY, 7 * DAY, 20 * DAY)
    assert state_at(0, 0, 3 * DAY, young) is State.SILENT
    # activity resets idleness, whatever the age
    assert state_at(0, 100 * DAY, 100 * DAY, t) is State.RETAINED
    assert state_at(0, 100 * DAY, 103 * DAY, t) is State.SILENT


@pytest.mark.parametrize("name", ["insurance", "fintech", "daily_app"])
def test_a_profile_decides_how_long_silence_takes(name: str) -> None:
    t = load_profile(name).thresholds
    first = -t.new_window  # past the new window, active at 0
    assert state_at(first, 0, t.silent_after - 1, t) is State.RETAINED
    assert state_at(first, 0, t.silent_after, t) is State.SILENT
    assert state_at(first, 0, t.churn_after, t) is State.CHURNED
    assert state_at(first, 0, t.dead_after, t) is State.DEAD


def test_an_insurance_user_is_not_silent_when_a_daily_app_user_is() -> None:
    insurance = load_profile("insurance").thresholds
    daily = load_profile("daily_app").thresholds
    assert state_at(0, 0, 10 * DAY, daily) is State.SILENT
    assert state_at(0, 0, 10 * DAY, insurance) is State.NEW


@SETTINGS
@given(thresholds(), user_times(), clock)
def test_state_is_a_pure_function(t: Thresholds, times: tuple[int, int], now: int) -> None:
    first, last = times
    copy = Thresholds(t.new_window, t.silent_after, t.churn_after, t.dead_after)
    results = {state_at(first, last, now, t) for _ in range(3)}
    assert len(results) == 1
    assert state_at(first, last, now, copy) in results
    assert t == copy


@SETTINGS
@given(thresholds(), user_times(), clock, clock)
def test_more_idleness_never_makes_a_user_more_active(
    t: Thresholds, times: tuple[int, int], a: int, b: int
) -> None:
    first, last = times
    lo, hi = sorted((max(a, last), max(b, last)))
    assert ORDER.index(state_at(first, last, lo, t)) <= ORDER.index(state_at(first, last, hi, t))


@SETTINGS
@given(thresholds(), user_times())
def test_change_points_are_the_only_moments_the_state_changes(t: Thresholds, times: tuple[int, int]) -> None:
    first, last = times
    points = change_points(first, last, t)
    assert list(points) == sorted(set(points))
    for now in range(last, last + t.dead_after + 3):
        if state_at(first, last, now, t) != state_at(first, last, now - 1, t):
            assert now in points


@SETTINGS
@given(thresholds(), user_times(), clock, clock, clock)
def test_splitting_an_interval_never_loses_or_doubles_a_crossing(
    t: Thresholds, times: tuple[int, int], x: int, y: int, z: int
) -> None:
    first, last = times
    a, b, c = sorted((x, y, z))
    whole = time_transitions(first, last, a, c, t)
    assert time_transitions(first, last, a, b, t) + time_transitions(first, last, b, c, t) == whole


@SETTINGS
@given(thresholds(), user_times(), st.lists(clock, min_size=2, max_size=8))
def test_any_partition_of_an_interval_gives_the_same_transitions(
    t: Thresholds, times: tuple[int, int], cuts: list[int]
) -> None:
    first, last = times
    points = sorted(cuts)
    pieces = [tr for a, b in itertools.pairwise(points) for tr in time_transitions(first, last, a, b, t)]
    assert pieces == time_transitions(first, last, points[0], points[-1], t)


@SETTINGS
@given(thresholds(), user_times(), clock, clock)
def test_transitions_chain_from_the_start_state_to_the_end_state(
    t: Thresholds, times: tuple[int, int], x: int, y: int
) -> None:
    first, last = times
    a, c = sorted((x, y))
    chain = time_transitions(first, last, a, c, t)
    state = state_at(first, last, a, t)
    for before, after in chain:
        assert before == state
        assert after != before
        assert ORDER.index(after) > ORDER.index(before)  # time only ages a user
        assert after is not State.NEW
        state = after
    assert state == state_at(first, last, c, t)
    assert len(chain) <= 4


@SETTINGS
@given(thresholds(), user_times(), clock, clock)
def test_transitions_are_exactly_the_state_changes_step_by_step(
    t: Thresholds, times: tuple[int, int], x: int, y: int
) -> None:
    """A brute-force restatement: walk the clock one unit at a time and record every change."""
    first, last = times
    a, c = sorted((x, y))
    want = []
    prev = design_rule(first, last, a, t)
    for now in range(a + 1, c + 1):
        cur = design_rule(first, last, now, t)
        if cur != prev:
            want.append((prev, cur))
            prev = cur
    assert [(p.value, q.value) for p, q in time_transitions(first, last, a, c, t)] == want


@SETTINGS
@given(thresholds(), user_times(), clock)
def test_an_empty_or_reversed_interval_has_no_transitions(
    t: Thresholds, times: tuple[int, int], a: int
) -> None:
    first, last = times
    assert time_transitions(first, last, a, a, t) == []
    assert time_transitions(first, last, a, a - 1, t) == []


def test_a_user_who_never_comes_back_walks_the_whole_way() -> None:
    profile = parse_profile(
        {
            "lifecycle": {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"},
            "funnel": [{"name": "visit", "event": "visit"}],
        }
    )
    t = profile.thresholds
    assert time_transitions(0, 0, 0, 100 * DAY, t) == [
        (State.NEW, State.RETAINED),
        (State.RETAINED, State.SILENT),
        (State.SILENT, State.CHURNED),
        (State.CHURNED, State.DEAD),
    ]
    # new_window == silent_after: new users who go quiet become silent directly
    same = Thresholds(2 * DAY, 2 * DAY, 5 * DAY, 12 * DAY)
    assert time_transitions(0, 0, 0, 3 * DAY, same) == [(State.NEW, State.SILENT)]
    # the interval is open on the left, closed on the right
    assert time_transitions(0, 0, 0, DAY, t) == [(State.NEW, State.RETAINED)]
    assert time_transitions(0, 0, DAY, 2 * DAY - 1, t) == []


@SETTINGS
@given(thresholds(), user_times(), clock)
def test_the_ranges_and_the_classifier_agree_with_the_definition(
    t: Thresholds, times: tuple[int, int], now: int
) -> None:
    """Every derived form of the rule (index ranges, the export's classifier) gives `state_at`."""
    first, last = times
    state = state_at(first, last, now, t)
    lo, hi = last_active_range(state, now, t)
    assert (lo is None or lo <= last) and (hi is None or last <= hi)
    inside = [
        s
        for s in (State.SILENT, State.CHURNED, State.DEAD, State.NEW)
        if _in(last_active_range(s, now, t), last)
    ]
    assert inside == [state if state in INACTIVE else State.NEW]  # new and retained share one range
    if state not in INACTIVE:
        assert (state is State.NEW) == (first >= new_since(now, t))
    assert classifier(now, t)(first, last) == (state.value, entered_at(first, last, state, t))


def _in(bounds: tuple[int | None, int | None], x: int) -> bool:
    lo, hi = bounds
    return (lo is None or lo <= x) and (hi is None or x <= hi)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ((0, 2, 3, 4), "new_window"),
        ((3, 2, 5, 9), "new_window"),
        ((1, 2, 2, 9), "churn_after"),
        ((1, 2, 5, 5), "dead_after"),
        ((1, 2, 5, -1), "dead_after"),
    ],
)
def test_thresholds_out_of_order_name_the_field(values: tuple[int, int, int, int], field: str) -> None:
    with pytest.raises(ThresholdsError) as info:
        validate_thresholds(Thresholds(*values))
    assert info.value.field == field and str(info.value).startswith(field + ":")
    assert validate_thresholds(Thresholds(1, 1, 2, 3)) == Thresholds(1, 1, 2, 3)
