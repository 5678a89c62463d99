"""Audiences: index ranges hold exactly the users the definition (`matches`) selects.

The property tests build the per-partition indexes the worker keeps (`la:{channel}` by
last_active, `fs:{channel}` by first_seen while inside the kept window, `rfm:{class}` by
last_active) for generated users, and compare the planned walk and the range counts with
brute-force filtering of the same users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.audience_filters import (
    AudienceFilter,
    AudienceFilterError,
    TimeBound,
    parse_filter,
)
from service.core.audiences import (
    NEG_INF,
    POS_INF,
    Cursor,
    after,
    channel_order,
    count_terms,
    la_intervals,
    matches,
    row_maker,
    segment_of,
    walk_index,
)
from service.core.instants import iso_ms
from service.core.lifecycle import State, Thresholds, entered_at, state_at
from service.core.profile import FunnelStage, Profile, ProfileError, Rfm, parse_profile
from service.core.records import UserRecord
from service.core.segments import SEGMENT_KEYS
from service.core.value import rfm_class

D = 1000  # one "day" in these tests' milliseconds: small numbers, many collisions
STAGES = ("visit", "register", "verify", "first_order", "repurchase")
CHANNELS = ("ads", "organic", "-")


def _profile(th: Thresholds, recency: int) -> Profile:
    return Profile(
        name="t",
        thresholds=th,
        funnel=tuple(FunnelStage(n, n) for n in STAGES),
        activity_types=None,
        revenue_types=frozenset({"order"}),
        rfm=Rfm(recency=recency, frequency=2, monetary=500.0),
    )


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    nw = draw(st.integers(1, 10)) * D
    sa = nw + draw(st.integers(0, 10)) * D
    ca = sa + draw(st.integers(1, 20)) * D
    da = ca + draw(st.integers(1, 40)) * D
    return Thresholds(nw, sa, ca, da)


@st.composite
def users(draw: st.DrawFn, now: int) -> dict[str, UserRecord]:
    out: dict[str, UserRecord] = {}
    for i in range(draw(st.integers(0, 40))):
        fs = now - draw(st.integers(0, 120)) * D // draw(st.sampled_from([1, 2, 3]))
        la = draw(st.integers(fs, now))
        out[f"u{i}"] = UserRecord(
            first_seen=fs,
            last_active=la,
            seen_until=now,
            channel=draw(st.sampled_from(CHANNELS)),
            stage=draw(st.integers(-1, len(STAGES) - 1)),
            orders=draw(st.integers(0, 3)),
            revenue=draw(st.sampled_from([0.0, 100.0, 500.0, 900.0])),
        )
    return out


@st.composite
def bounds(draw: st.DrawFn, now: int) -> TimeBound | None:
    kind = draw(st.sampled_from(["none", "ago", "at"]))
    if kind == "ago":
        return TimeBound(ago=draw(st.integers(0, 150)) * D // 2)
    if kind == "at":
        return TimeBound(at=now - draw(st.integers(-5, 200)) * D // 2)
    return None


@st.composite
def filters(draw: st.DrawFn, now: int) -> AudienceFilter:
    states = draw(st.frozensets(st.sampled_from([s.value for s in State])))
    stage = draw(st.none() | st.integers(0, len(STAGES) - 1))
    return AudienceFilter(
        states=states,
        channel=draw(st.none() | st.sampled_from(CHANNELS)),
        stage=stage if draw(st.booleans()) else None,
        not_stage=draw(st.none() | st.integers(0, len(STAGES) - 1)) if draw(st.booleans()) else None,
        segment=draw(st.none() | st.sampled_from(sorted(SEGMENT_KEYS))),
        entered_since=draw(bounds(now)),
        entered_before=draw(bounds(now)),
    )


@dataclass
class Indexes:
    """What the worker's commits leave in one partition's sorted sets."""

    la: dict[str, dict[str, int]]
    fs: dict[str, dict[str, int]]
    rfm: dict[int, dict[str, int]]

    @classmethod
    def of(cls, found: dict[str, UserRecord], now: int, keep_first: int, profile: Profile) -> Indexes:
        la: dict[str, dict[str, int]] = {ch: {} for ch in CHANNELS}
        fs: dict[str, dict[str, int]] = {ch: {} for ch in CHANNELS}
        rfm: dict[int, dict[str, int]] = {1: {}, 2: {}, 3: {}}
        for uid, rec in found.items():
            la[rec.channel][uid] = rec.last_active
            if rec.first_seen > now - keep_first:
                fs[rec.channel][uid] = rec.first_seen
            c = rfm_class(rec, profile.rfm)
            if c:
                rfm[c][uid] = rec.last_active
        return cls(la, fs, rfm)


def _in(index: dict[str, int], lo: int, hi: int) -> set[str]:
    return {u for u, s in index.items() if lo <= s <= hi}


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_planned_ranges_hold_exactly_the_matching_users(data: st.DataObject) -> None:
    now = 1_000_000
    th = data.draw(thresholds())
    profile = _profile(th, data.draw(st.integers(1, 60)) * D)
    found = data.draw(users(now))
    f = data.draw(filters(now))
    keep_first = th.new_window + data.draw(st.integers(0, 30)) * D
    idx = Indexes.of(found, now, keep_first, profile)
    want = {u for u, rec in found.items() if matches(f, rec, now, profile)}

    intervals = la_intervals(f, now, profile)
    assert all(lo <= hi for lo, hi in intervals)
    assert all(a[0] > b[1] + 1 for a, b in pairwise(intervals)), "disjoint, descending"
    kind, fm_class = walk_index(f)
    if kind == "rfm":
        walked = [idx.rfm[fm_class]]
    else:
        walked = [idx.la[f.channel]] if f.channel is not None else [idx.la[ch] for ch in CHANNELS]
    candidates = set().union(*(_in(index, lo, hi) for index in walked for lo, hi in intervals))
    assert want <= candidates, "the walk must reach every matching user"
    assert {u for u in candidates if matches(f, found[u], now, profile)} == want

    terms = count_terms(f, now, profile)
    if terms is not None:
        channels = [f.channel] if f.channel is not None else list(CHANNELS)
        total = 0
        for t in terms:
            if t.index == "rfm":
                total += t.sign * len(_in(idx.rfm[t.fm_class], t.lo, t.hi))
            else:
                for ch in channels:
                    index = idx.la[ch] if t.index == "la" else idx.fs[ch]
                    total += t.sign * len(_in(index, t.lo, t.hi))
        assert total == len(want)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_compiled_filter_agrees_with_the_definitions(data: st.DataObject) -> None:
    now = 1_000_000
    th = data.draw(thresholds())
    profile = _profile(th, data.draw(st.integers(1, 60)) * D)
    found = data.draw(users(now))
    f = data.draw(filters(now))
    row = row_maker(f, now, profile, STAGES)
    for uid, rec in found.items():
        got = row(uid, orjson.loads(rec.pack()))
        assert (got is not None) == matches(f, rec, now, profile)
        if got is not None:
            state = state_at(rec.first_seen, rec.last_active, now, th)
            assert got == {
                "user_id": uid,
                "state": state.value,
                "channel": None if rec.channel == "-" else rec.channel,
                "stage": STAGES[rec.stage] if rec.stage >= 0 else None,
                "segment": segment_of(rec, now, profile),
                "last_active": iso_ms(rec.last_active),
                "entered_at": iso_ms(entered_at(rec.first_seen, rec.last_active, state, th)),
            }


@given(st.integers(-(10**12), 4 * 10**12))
def test_iso_ms_is_rfc3339_with_milliseconds(ms: int) -> None:
    want = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_ms(ms) == want


def test_index_answerable_filters_are_counted_without_a_walk() -> None:
    th = Thresholds(3 * D, 3 * D, 14 * D, 60 * D)
    profile = _profile(th, 30 * D)
    stage_names = list(STAGES)
    answerable = [
        {"state": ["silent"], "entered_since": "7s"},
        {"state": ["dead"], "channel": "ads"},
        {"state": ["new", "retained"]},
        {"state": ["silent", "churned"], "segment": "important_recall"},
        {"segment": "general_recall"},
    ]
    for raw in answerable:
        assert count_terms(parse_filter(raw, stage_names), 10**6, profile) is not None, raw
    walked = [{"stage": "register"}, {"segment": "important_value", "channel": "ads"}]
    for raw in walked:
        assert count_terms(parse_filter(raw, stage_names), 10**6, profile) is None, raw


@given(st.integers(0, 10**6), st.integers(0, 10**6), thresholds())
def test_entered_at_is_when_the_idle_state_began(first_seen: int, idle: int, th: Thresholds) -> None:
    la = first_seen + 5
    now = la + idle
    state = state_at(first_seen, la, now, th)
    at = entered_at(first_seen, la, state, th)
    assert at <= now
    if state in (State.SILENT, State.CHURNED, State.DEAD):
        assert state_at(first_seen, la, at, th) is state
        assert state_at(first_seen, la, at - 1, th) is not state


def test_filters_parse_from_query_parameters_and_name_what_is_wrong() -> None:
    stages = list(STAGES)
    f = parse_filter(
        {"state": ["silent", "dead"], "channel": "ads", "stage": "register", "entered_since": "7d"}, stages
    )
    assert f.states == {"silent", "dead"} and f.stage == 1
    assert f.entered_since == TimeBound(ago=7 * 86_400_000)
    assert parse_filter({"state": "new,retained"}, stages).states == {"new", "retained"}
    assert parse_filter({"entered_before": "2026-11-16T00:00:00Z"}, stages).entered_before == TimeBound(
        at=1_794_787_200_000
    )
    assert parse_filter({"channel": "none"}, stages).channel == "-"
    for raw, named in (
        ({"state": ["sleepy"]}, "state"),
        ({"stage": "checkout"}, "stage"),
        ({"not_stage": "x"}, "not_stage"),
        ({"segment": "vip"}, "segment"),
        ({"channel": "a b"}, "channel"),
        ({"entered_since": "last week"}, "entered_since"),
        ({"entered_before": "2026-11-16T00:00:00"}, "entered_before"),  # no offset
        ({"colour": "red"}, "colour"),
    ):
        with pytest.raises(AudienceFilterError, match=named):
            parse_filter(raw, stages)
    assert parse_filter(f.to_json(stages), stages) == f


def test_cursor_round_trips_and_is_bound_to_its_filters() -> None:
    c = Cursor(3, "la:ads", 1_700_000_000_123, "ü{1}:x".encode())
    text = c.encode("abc", b"key")
    assert Cursor.decode(text, "abc", b"key") == c
    with pytest.raises(AudienceFilterError, match="other filters"):
        Cursor.decode(text, "xyz", b"key")
    with pytest.raises(AudienceFilterError, match="another secret"):
        Cursor.decode(text, "abc", b"other key")
    with pytest.raises(AudienceFilterError, match="cursor"):
        Cursor.decode("not-a-cursor", "abc", b"key")


@given(st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=3)), unique=True, min_size=1))
def test_after_follows_redis_reverse_order(items: list[tuple[int, bytes]]) -> None:
    ordered = sorted(items, reverse=True)  # ZRANGE ... REV: score desc, then member bytes desc
    for i, (score, member) in enumerate(ordered):
        assert [x for x in ordered if after(x[0], x[1], score, member)] == ordered[i + 1 :]


def test_users_without_a_channel_are_walked_last() -> None:
    assert channel_order(["organic", "-", "ads"]) == ["ads", "organic", "-"]


def test_intervals_of_states_under_thresholds() -> None:
    th = Thresholds(3 * D, 3 * D, 14 * D, 60 * D)
    profile = _profile(th, 30 * D)
    now = 10**6
    assert la_intervals(AudienceFilter(states=frozenset({"silent"})), now, profile) == [
        (now - 14 * D + 1, now - 3 * D)
    ]
    silent_this_week = AudienceFilter(states=frozenset({"silent"}), entered_since=TimeBound(ago=7 * D))
    assert la_intervals(silent_this_week, now, profile) == [(now - 10 * D, now - 3 * D)]
    assert la_intervals(AudienceFilter(states=frozenset({"dead", "new"})), now, profile) == [
        (now - 3 * D + 1, POS_INF),
        (NEG_INF, now - 60 * D),
    ]


def test_profile_audiences_are_validated_with_the_profile() -> None:
    base = {
        "name": "p",
        "lifecycle": {"new_window": "3d", "silent_after": "3d", "churn_after": "14d", "dead_after": "60d"},
        "funnel": [{"name": "visit", "event": "visit"}, {"name": "first_order", "event": "order"}],
    }
    ok = parse_profile({**base, "audiences": {"silent_7d": {"state": "silent", "entered_since": "7d"}}})
    assert [a.name for a in ok.audiences] == ["silent_7d"]
    with pytest.raises(ProfileError, match=r"audiences\.x: stage: 'register' is not a funnel stage"):
        parse_profile({**base, "audiences": {"x": {"stage": "register"}}})
    with pytest.raises(ProfileError, match=r"audiences\.Bad"):
        parse_profile({**base, "audiences": {"Bad": {}}})
