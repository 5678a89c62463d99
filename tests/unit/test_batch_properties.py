"""`apply_events` and `sweep`: batch boundaries, replays and sweeps never change the result."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events, sweep
from service.core.dedup import event_digest
from service.core.events import Event
from service.core.lifecycle import state_at
from service.core.profile import Profile, parse_profile
from service.core.records import PendingTrigger, UserRecord
from tests import reference as ref

DAY = 86_400_000
T0 = 1_700_000_000_000

PROFILE = parse_profile(
    {
        "name": "test",
        "lifecycle": {"new_window": "2d", "silent_after": "3d", "churn_after": "7d", "dead_after": "20d"},
        "activity_types": ["visit", "register", "order"],
        "funnel": [
            {"name": "visit", "event": "visit"},
            {"name": "register", "event": "register"},
            {"name": "first_order", "event": "order"},
            {"name": "repurchase", "event": "order", "nth": 2},
        ],
    }
)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events of a few users with increasing time, some channels, some repeated ids."""
    n = draw(st.integers(1, 40))
    ts = T0
    out: list[Event] = []
    for i in range(n):
        ts += draw(st.sampled_from([0, 3_600_000, DAY, 4 * DAY, 10 * DAY, 30 * DAY]))
        uid = draw(st.sampled_from(["a", "b", "c", "d"]))
        etype = draw(st.sampled_from(["visit", "register", "order", "message_delivered"]))
        channel = draw(st.sampled_from([None, None, "ads", "organic"]))
        amount = draw(st.sampled_from([None, 10.0, 2.5])) if etype == "order" else None
        eid = draw(st.sampled_from([f"e{i}", f"e{i}", f"e{max(i - 1, 0)}"]))  # some duplicates
        out.append(Event(eid, uid, etype, ts, channel, amount))
    return out


def unseen(events: list[Event], seen: set[bytes]) -> list[Event]:
    """The events whose id digest was not applied before, as the worker's de-duplication does."""
    fresh = []
    for ev in events:
        digest = event_digest(ev.event_id)
        if digest not in seen:
            seen.add(digest)
            fresh.append(ev)
    return fresh


def run(
    events: list[Event], cuts: list[int], profile: Profile = PROFILE
) -> tuple[dict[str, UserRecord], Counter[str], dict[str, float]]:
    """Apply in batches split at `cuts`, de-duplicating by digest as the worker does."""
    records: dict[str, UserRecord] = {}
    counts: Counter[str] = Counter()
    sums: Counter[str] = Counter()
    seen: set[bytes] = set()
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    swept = events[0].ts if events else 0
    for lo, hi in itertools.pairwise(bounds):
        result = apply_events(records, unseen(events[lo:hi], seen), swept, profile)
        records.update(result.records)
        counts.update(result.counts)
        sums.update(result.sums)
    return records, counts, dict(sums)


@settings(max_examples=250, deadline=None)
@given(histories(), st.lists(st.integers(0, 100), max_size=5))
def test_batch_boundaries_do_not_change_anything(events: list[Event], cuts: list[int]) -> None:
    one = run(events, [])
    many = run(events, cuts)
    assert one[0] == many[0]
    assert +one[1] == +many[1]
    assert {k: round(v, 6) for k, v in one[2].items() if v} == {
        k: round(v, 6) for k, v in many[2].items() if v
    }


@settings(max_examples=250, deadline=None)
@given(histories())
def test_applying_a_batch_twice_equals_applying_it_once(events: list[Event]) -> None:
    once = run(events, [])
    twice = run(events + events, [len(events)])
    assert once[0] == twice[0] and +once[1] == +twice[1]


def _as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


@settings(max_examples=250, deadline=None)
@given(histories())
def test_counters_agree_with_a_direct_computation(events: list[Event]) -> None:
    records, counts, sums = run(events, [])
    users = ref.reference(_as_dicts(events), PROFILE)
    assert set(records) == set(users)
    for uid, want in users.items():
        got = records[uid]
        assert (got.first_seen, got.last_active, got.orders) == (
            want.first_seen,
            want.last_active,
            want.orders,
        )
        assert got.channel == (want.channel or "-")  # the first channel seen sticks
        assert got.stage == ref.stage_of(want, PROFILE)
    channels = {u.channel or "-" for u in users.values()}
    for ch in channels:
        members = [u for u in users.values() if (u.channel or "-") == ch]
        assert counts[f"users|{ch}"] == len(members)
        for k, n in enumerate(ref.funnel_users(users, PROFILE, ch)):
            assert counts[f"stage|{ch}|{k}"] == n  # monotone: a user at stage k counts for every stage <= k
        assert counts[f"orders|{ch}"] == sum(u.orders for u in members)
        assert round(sums.get(f"revenue|{ch}", 0.0), 6) == round(sum(u.revenue for u in members), 6)
    assert sum(v for k, v in counts.items() if k.startswith("users|")) == len(users)
    assert sum(v for k, v in counts.items() if k.startswith("tr|-|")) == len(users)


@settings(max_examples=250, deadline=None)
@given(histories(), st.lists(st.integers(1, 60), min_size=1, max_size=6), st.integers(0, 100))
def test_events_and_sweeps_count_each_transition_once(
    events: list[Event], sweep_days: list[int], cut_seed: int
) -> None:
    """Sweeps at arbitrary moments between batches give the reference transitions exactly."""
    seen: set[bytes] = set()
    records: dict[str, UserRecord] = {}
    counts: Counter[str] = Counter()
    swept = events[0].ts
    clock = swept
    moments = sorted({swept + d * DAY for d in sweep_days})
    pending = list(events)
    while pending or moments:
        if moments and (not pending or moments[0] < pending[0].ts):
            now = moments.pop(0)
            if now <= max(swept, clock):  # a partition's clock never runs behind what it applied
                continue
            counts.update(sweep(records, swept, now, PROFILE).counts)  # all records: a superset of candidates
            swept = clock = now
            continue
        size = 1 + cut_seed % 3
        batch, pending = pending[:size], pending[size:]
        result = apply_events(records, unseen(batch, seen), swept, PROFILE)
        records.update(result.records)
        counts.update(result.counts)
        clock = max(clock, *(e.ts for e in batch))
    final = max(clock, swept)
    if final > swept:
        counts.update(sweep(records, swept, final, PROFILE).counts)
    expected = ref.transitions(_as_dicts(events), PROFILE, final)
    assert {k: v for k, v in counts.items() if k.startswith("tr|") and v} == dict(expected)


def test_recall_is_counted_by_the_state_the_user_came_back_from() -> None:
    t = PROFILE.thresholds
    for idle, came_from in ((t.silent_after, "silent"), (t.churn_after, "churned"), (t.dead_after, "dead")):
        first = Event("1", "u", "visit", T0)
        back = Event("2", "u", "visit", T0 + idle + 1)
        result = apply_events({}, [first], T0, PROFILE)
        again = apply_events(result.records, [back], T0, PROFILE)
        assert again.counts[f"tr|{came_from}|retained"] == 1
        rec = again.records["u"]
        assert state_at(rec.first_seen, rec.last_active, back.ts, t).value == "retained"


def test_non_activity_events_neither_create_users_nor_move_last_active() -> None:
    result = apply_events({}, [Event("1", "u", "message_delivered", T0)], T0, PROFILE)
    assert result.records == {} and result.counts["unknown_user_events"] == 1
    created = apply_events({}, [Event("2", "u", "visit", T0)], T0, PROFILE).records
    later = apply_events(created, [Event("3", "u", "message_delivered", T0 + DAY)], T0, PROFILE)
    assert later.records["u"].last_active == T0


def test_a_user_first_seen_without_a_channel_moves_with_their_counts() -> None:
    first = apply_events(
        {}, [Event("1", "u", "visit", T0), Event("2", "u", "order", T0 + 1, amount=5.0)], T0, PROFILE
    )
    assert first.counts["users|-"] == 1 and first.counts["orders|-"] == 1
    moved = apply_events(first.records, [Event("3", "u", "visit", T0 + 2, channel="ads")], T0, PROFILE)
    assert moved.counts["users|-"] == -1 and moved.counts["users|ads"] == 1
    assert moved.counts["stage|-|0"] == -1 and moved.counts["stage|ads|0"] == 1
    assert moved.counts["orders|ads"] == 1 and moved.sums["revenue|ads"] == 5.0
    assert moved.index_removals["-"] == ["u"]
    assert moved.active_index["ads"]["u"] == T0 + 2
    stays = apply_events(moved.records, [Event("4", "u", "visit", T0 + 3, channel="organic")], T0, PROFILE)
    assert stays.records["u"].channel == "ads"


@given(
    st.integers(0, 2**41),
    st.integers(0, 2**41),
    st.text(max_size=20),
    st.integers(-1, 5),
    st.integers(0, 100),
    st.floats(0, 1e9, allow_nan=False),
    st.dictionaries(st.text(max_size=10), st.integers(0, 1000), max_size=4),
)
def test_records_pack_and_unpack_losslessly(
    f: int, la: int, ch: str, stage: int, orders: int, revenue: float, counts: dict[str, int]
) -> None:
    rec = UserRecord(f, la, max(f, la), ch or "-", stage, orders, revenue, counts)
    assert UserRecord.unpack(rec.pack()) == rec


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**41),
    st.integers(0, 1 << 70),
    st.booleans(),
    st.dictionaries(st.sampled_from(["tier", "plan"]), st.text(max_size=5), max_size=2),
    st.dictionaries(
        st.sampled_from(["order", "verify"]), st.lists(st.integers(0, 10**9), min_size=1, max_size=3)
    ),
    st.integers(0, 1 << 200),
)
def test_records_with_any_optional_parts_pack_and_unpack_losslessly(
    f: int, days: int, triggers: bool, traits: dict[str, str], firsts: dict[str, list[int]], active: int
) -> None:
    """Each optional tail (retention days, triggers, traits, funnel times, active days) alone
    or with any others: the packed form tells them apart."""
    rec = UserRecord(f, f, f, "ads", 1, 2, 3.5, {"order": 2})
    rec.days, rec.traits, rec.active_days = days, traits, active
    rec.firsts = {t: sorted(f + x for x in xs) for t, xs in firsts.items()}
    if triggers:
        rec.pending = [PendingTrigger(f + 5, "t1", "renewal", f, {"policy_id": "p"})]
        rec.sent, rec.onboarding = [f], f
    assert UserRecord.unpack(rec.pack()) == rec
