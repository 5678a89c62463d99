"""`apply_events`, `sweep` and `event_digest`: what one batch of a partition changes, as data.

The worker reads the batch's users, calls `apply_events`, and commits the result; between
batches it calls `sweep` for the passing of time. These tests simulate that loop (records
dict, summed counters, indexes as the store applies them) and compare with direct
computations written the obvious way.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from service.core.batch import BatchResult, apply_events, sweep
from service.core.dedup import bucket_ttl_s, dedup_bucket, event_digest
from service.core.events import Event
from service.core.lifecycle import State, state_at
from service.core.profile import Profile, parse_profile
from service.core.records import UserRecord
from service.core.triggers import Fired, recall_offsets
from tests import reference as ref

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z, a day boundary
SETTINGS = settings(max_examples=250, deadline=None)  # the key properties
LIGHT = settings(max_examples=100, deadline=None)

LIFECYCLE = {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"}
FUNNEL = [
    {"name": "visit", "event": "visit"},
    {"name": "register", "event": "register"},
    {"name": "first_order", "event": "order"},
    {"name": "repurchase", "event": "order", "nth": 2},
]
# triggers have their own tests (test_triggers.py); here they would only add counters
NO_TRIGGERS = {
    "recall": {"silent": False, "churned": False, "dead": False},
    "renewal": {"enabled": False},
    "onboarding": {"enabled": False},
}
PROFILE = parse_profile(
    {
        "name": "shop",
        "triggers": NO_TRIGGERS,
        "lifecycle": LIFECYCLE,
        "activity_types": ["visit", "register", "order", "renew"],
        "revenue_types": ["order", "renew"],
        "funnel": FUNNEL,
        "retention_days": [1, 2, 7],
        "rfm": {"recency": "3d", "frequency": 2, "monetary": 12},
    }
)
ALL_ACTIVE = parse_profile(
    {"name": "all_active", "lifecycle": LIFECYCLE, "funnel": FUNNEL, "triggers": NO_TRIGGERS}
)
TH = PROFILE.thresholds

USERS = ["a", "b", "c", "d"]
TYPES = ["visit", "visit", "register", "order", "order", "renew", "message_delivered", "promo_view"]
CHANNELS = [None, None, None, "ads", "organic"]
AMOUNTS = [None, 0.0, 2.5, 10.0, -1.25]  # binary fractions: sums are exact in any order
# 9h: events at all times of day, so quiet hours defer some triggers and not others
GAPS = [0, 1, HOUR, 9 * HOUR, DAY - 1, DAY, 2 * DAY, 2 * DAY + 1, 3 * DAY, 5 * DAY, 7 * DAY]
GAPS += [12 * DAY, 30 * DAY]
LABELLED = {"visit", "register", "order", "renew", "message_delivered", "verify", "login"}


# --- histories -------------------------------------------------------------------------------


# One integer per event, decoded in mixed radix: far cheaper for hypothesis to generate than a
# draw per field, and shrinking the integer towards 0 makes every field its simplest choice.
EVENT_FIELDS: tuple[list[Any], ...] = (GAPS, USERS, TYPES, CHANNELS, AMOUNTS, [False, True], GAPS)
EVENT_CODES = st.integers(0, math.prod(len(f) for f in EVENT_FIELDS) - 1)


def decode_event(code: int, i: int, clock: int, late: bool) -> tuple[Event, int]:
    """The `i`th event from its code, and the clock after it; `late` lets its ts lag the clock."""
    picks = []
    for choices in EVENT_FIELDS:
        code, k = divmod(code, len(choices))
        picks.append(choices[k])
    gap, user, etype, channel, amount, is_late, lag = picks
    clock += gap
    ts = clock - lag if late and is_late else clock
    return Event(f"e{i}", user, etype, ts, channel, amount if etype in ("order", "renew") else None), clock


@st.composite
def histories(draw: st.DrawFn, ordered: bool = True, max_size: int = 30) -> list[Event]:
    """Events of a few users; ordered: non-decreasing ts; otherwise some arrive late."""
    clock = T0
    out: list[Event] = []
    n = draw(st.integers(1, max_size))  # lists would mostly be short
    for i, code in enumerate(draw(st.lists(EVENT_CODES, min_size=n, max_size=n))):
        event, clock = decode_event(code, i, clock, late=not ordered)
        out.append(event)
    return out


# --- the worker, simulated ---------------------------------------------------------------------


@dataclass
class Store:
    """What the store keeps: records, summed counters and sums, and the per-channel indexes."""

    records: dict[str, UserRecord] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    active: defaultdict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    first: defaultdict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    rfm: defaultdict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    removals: list[tuple[str, str]] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    due: dict[str, int] = field(default_factory=dict)
    fired: list[Fired] = field(default_factory=list)

    def commit(self, result: BatchResult) -> None:
        """As `store.commit_batch` does: records, removals before additions, counters."""
        self.records.update(result.records)
        for channel, members in result.index_removals.items():
            for uid in members:
                self.removals.append((channel, uid))
                self.active[channel].pop(uid, None)
                self.first[channel].pop(uid, None)
        for channel, members in result.first_removals.items():
            for uid in members:
                self.first[channel].pop(uid, None)
        for channel, scores in result.active_index.items():
            self.active[channel].update(scores)
        for channel, scores in result.first_index.items():
            self.first[channel].update(scores)
        for fm_class, members in result.rfm_removals.items():
            for uid in members:
                self.rfm[fm_class].pop(uid, None)
        for fm_class, scores in result.rfm_index.items():
            self.rfm[fm_class].update(scores)
        self.counts.update(result.counts)
        for key, value in result.sums.items():
            self.sums[key] += value
        self.fired.extend(result.triggers.fired)
        self._due(result.due_index)

    def apply(self, events: list[Event], swept: int, profile: Profile = PROFILE) -> BatchResult:
        result = apply_events(self.records, events, swept, profile)
        self.commit(result)
        return result

    def apply_unseen(self, events: list[Event], swept: int, profile: Profile = PROFILE) -> BatchResult:
        """De-duplicated as the worker does: skip events whose digest was applied before."""
        fresh = []
        for ev in events:
            digest = event_digest(ev.event_id)
            if digest not in self.seen:
                self.seen.add(digest)
                fresh.append(ev)
        return self.apply(fresh, swept, profile)

    def sweep(self, swept: int, now: int, profile: Profile = PROFILE) -> None:
        result = sweep(self.records, swept, now, profile)  # all records: a superset
        self.counts.update(result.counts)
        self.records.update(result.records)
        self.fired.extend(result.triggers.fired)
        self._due(result.due_index)

    def _due(self, due_index: dict[str, int | None]) -> None:
        for uid, due in due_index.items():
            if due is None:
                self.due.pop(uid, None)
            else:
                self.due[uid] = due

    def totals(self) -> tuple[dict[str, int], dict[str, float]]:
        return nonzero(self.counts), nonzero(self.sums)


def nonzero(counter: Counter[str] | dict[str, float]) -> dict[str, Any]:
    return {k: v for k, v in counter.items() if v}


def in_batches(events: list[Event], cuts: Iterable[int]) -> list[list[Event]]:
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    return [events[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def transitions(counts: dict[str, int]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for key, n in counts.items():
        if key.startswith("tr|") and n:
            _, a, b = key.split("|")
            out[a, b] += n
    return out


# --- a direct computation ------------------------------------------------------------------------


@dataclass
class Ref:
    first_seen: int
    last_active: int
    channel: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    revenue: float = 0.0
    activity_days: set[int] = field(default_factory=set)


def reference(events: list[Event], profile: Profile = PROFILE) -> tuple[dict[str, Ref], Counter[str]]:
    """Users as the rules define them, and the per-event counters."""
    users: dict[str, Ref] = {}
    counts: Counter[str] = Counter()
    for ev in events:
        labelled = ev.type in LABELLED | (profile.activity_types or set()) | profile.funnel_events
        counts[f"ev|{ev.type if labelled else 'other'}"] += 1
        active = profile.is_activity(ev.type)
        user = users.get(ev.user_id)
        if user is None:
            if not active:
                counts["unknown_user_events"] += 1
                continue
            user = users[ev.user_id] = Ref(ev.ts, ev.ts)
        counts["applied"] += 1
        user.first_seen = min(user.first_seen, ev.ts)
        if active:
            user.last_active = max(user.last_active, ev.ts)
            user.activity_days.add(ev.ts // DAY)
        if user.channel is None and ev.channel:
            user.channel = ev.channel
        user.counts[ev.type] += 1
        if ev.type in profile.revenue_types:
            user.orders += 1
            user.revenue += ev.amount or 0.0
    return users, counts


def ref_stage(user: Ref, profile: Profile = PROFILE) -> int:
    return max((i for i, s in enumerate(profile.funnel) if user.counts[s.event] >= s.nth), default=-1)


def reference_transitions(
    events: list[Event], final: int, profile: Profile = PROFILE
) -> Counter[tuple[str, str]]:
    """Stage changes of each user from their first activity to `final`, events in time order.

    The state is `state_at` of (first activity, latest activity so far, clock), sampled at every
    moment it can change: each activity event (just before and just after it) and each
    threshold crossing of every last_active the user ever had.
    """
    th = profile.thresholds
    first: dict[str, int] = {}
    acts: dict[str, list[int]] = defaultdict(list)
    for ev in events:
        if profile.is_activity(ev.type):
            first.setdefault(ev.user_id, ev.ts)
            acts[ev.user_id].append(ev.ts)
    out: Counter[tuple[str, str]] = Counter()
    for uid, f in first.items():
        times = acts[uid]
        points = {f, final, f + th.new_window, *times}
        points |= {a + x for a in times for x in (th.silent_after, th.churn_after, th.dead_after)}
        seq: list[str] = []
        for p in sorted(p for p in points if f <= p <= final):
            before = [a for a in times if a < p]
            upto = [a for a in times if a <= p]
            if before and len(upto) > len(before):  # an activity event at p: first the state just before it
                seq.append(state_at(f, before[-1], p, th).value)
            seq.append(state_at(f, upto[-1], p, th).value)
        out["-", seq[0]] += 1
        for a, b in itertools.pairwise(seq):
            if a != b:
                out[a, b] += 1
    return out


# --- 1. batch boundaries ---------------------------------------------------------------------------


@SETTINGS
@given(
    histories(ordered=False),
    st.lists(st.integers(0, 100), max_size=6),
    st.sampled_from([T0 - 20 * DAY, T0, T0 + 3 * DAY, T0 + 40 * DAY]),
    st.sampled_from([PROFILE, ALL_ACTIVE]),
)
def test_splitting_a_history_into_batches_changes_nothing(
    events: list[Event], cuts: list[int], swept: int, profile: Profile
) -> None:
    one = Store()
    one.apply(events, swept, profile)
    many = Store()
    for batch in in_batches(events, cuts):
        many.apply(batch, swept, profile)
    assert many.records == one.records
    assert many.totals() == one.totals()
    assert nonzero_index(many.active) == nonzero_index(one.active)


def nonzero_index(index: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {ch: members for ch, members in index.items() if members}


@LIGHT
@given(
    histories(ordered=False), st.lists(st.integers(0, 100), max_size=6), st.sampled_from([T0, T0 + 9 * DAY])
)
def test_the_indexes_follow_the_records(events: list[Event], cuts: list[int], swept: int) -> None:
    """Active index: every user under their channel with last_active; first index: every user
    still young enough to cross the new window, with first_seen; nobody under a wrong channel."""
    store = Store()
    for batch in in_batches(events, cuts):
        store.apply(batch, swept)
    want_active: dict[str, dict[str, int]] = defaultdict(dict)
    for uid, rec in store.records.items():
        want_active[rec.channel][uid] = rec.last_active
    assert nonzero_index(store.active) == dict(want_active)
    for channel, members in store.first.items():
        for uid in members:
            assert store.records[uid].channel == channel
    for uid, rec in store.records.items():
        if rec.first_seen + TH.new_window > rec.seen_until:
            assert store.first[rec.channel].get(uid) == rec.first_seen
    # RFM classes: 2 for frequent (orders), 1 for high value (revenue), by last_active
    want_rfm: dict[int, dict[str, int]] = defaultdict(dict)
    for uid, rec in store.records.items():
        fm_class = (2 if rec.orders >= PROFILE.rfm.frequency else 0) | (rec.revenue >= PROFILE.rfm.monetary)
        if fm_class:
            want_rfm[fm_class][uid] = rec.last_active
    assert {c: m for c, m in store.rfm.items() if m} == dict(want_rfm)


@LIGHT
@given(
    histories(ordered=False),
    st.lists(st.integers(0, 100), max_size=4),
    st.lists(st.sampled_from(GAPS), max_size=4),
)
def test_index_range_queries_find_every_sweep_candidate(
    events: list[Event], cuts: list[int], sweep_gaps: list[int]
) -> None:
    """Sweeping only the users the store's range queries return counts what sweeping all does."""
    store = Store()
    swept = T0
    for batch, gap in itertools.zip_longest(in_batches(events, cuts), sweep_gaps):
        if batch:
            store.apply(batch, swept)
        now = max([swept, *(e.ts for e in batch or [])]) + (gap or 0)
        candidates = {}
        idle = (TH.silent_after, TH.churn_after, TH.dead_after, *recall_offsets(PROFILE))
        for channel in store.active:
            for uid, last in store.active[channel].items():
                if any(swept - x < last <= now - x for x in idle):
                    candidates[uid] = store.records[uid]
            for uid, first in store.first[channel].items():
                if swept - TH.new_window < first <= now - TH.new_window:
                    candidates[uid] = store.records[uid]
        for uid, due in store.due.items():
            if due <= now:
                candidates[uid] = store.records[uid]
        some, every = sweep(candidates, swept, now, PROFILE), sweep(store.records, swept, now, PROFILE)
        assert (some.counts, some.records, some.due_index) == (every.counts, every.records, every.due_index)
        assert sorted(some.triggers.fired, key=repr) == sorted(every.triggers.fired, key=repr)
        store.sweep(swept, now)
        swept = now


# --- 2. counters against a direct computation --------------------------------------------------------


@SETTINGS
@given(
    histories(ordered=False),
    st.lists(st.integers(0, 100), max_size=4),
    st.sampled_from([PROFILE, ALL_ACTIVE]),
)
def test_counters_agree_with_a_direct_computation(
    events: list[Event], cuts: list[int], profile: Profile
) -> None:
    store = Store()
    for batch in in_batches(events, cuts):
        store.apply(batch, T0, profile)
    counts, sums = store.totals()
    users, per_event = reference(events, profile)

    assert set(store.records) == set(users)
    for uid, want in users.items():
        got = store.records[uid]
        assert (got.first_seen, got.last_active) == (want.first_seen, want.last_active)
        assert got.channel == (want.channel or "-")
        assert got.stage == ref_stage(want, profile)
        assert got.orders == want.orders
        assert got.revenue == want.revenue

    def by_channel(key: str, value: Callable[[Ref], float]) -> dict[str, object]:
        out: defaultdict[str, float] = defaultdict(float)
        for user in users.values():
            out[f"{key}|{user.channel or '-'}"] += value(user)
        return {k: v for k, v in out.items() if v}

    def only(prefix: str) -> dict[str, object]:
        return {k: v for k, v in {**counts, **sums}.items() if k.startswith(prefix + "|")}

    assert only("users") == by_channel("users", lambda u: 1)
    assert only("orders") == by_channel("orders", lambda u: u.orders)
    assert only("revenue") == by_channel("revenue", lambda u: u.revenue)
    assert only("payers") == by_channel("payers", lambda u: int(u.orders > 0))
    assert only("registered") == by_channel("registered", lambda u: int(u.counts["register"] > 0))
    want_stages: Counter[str] = Counter()
    for user in users.values():
        for k in range(ref_stage(user, profile) + 1):  # a user at stage k counts for every stage <= k
            want_stages[f"stage|{user.channel or '-'}|{k}"] += 1
    assert only("stage") == dict(want_stages)
    want_cohorts = Counter(f"cohort|{u.channel or '-'}|{u.first_seen // DAY}" for u in users.values())
    assert only("cohort") == dict(want_cohorts)
    for key, n in only("ret").items():  # the retained of a cohort are some of its users, late events or not
        _, channel, day, _ = key.split("|")
        assert 0 <= n <= want_cohorts[f"cohort|{channel}|{day}"]
    for key in ("applied", "unknown_user_events"):
        assert counts.get(key, 0) == per_event[key]
    assert only("ev") == dict(per_event - Counter({"applied": 10**9, "unknown_user_events": 10**9}))
    assert sum(n for (a, _), n in transitions(counts).items() if a == "-") == len(users)


@SETTINGS
@given(histories(ordered=False), st.lists(st.integers(0, 100), max_size=4))
def test_cohort_retention_counts_users_active_n_days_after_their_first(
    events: list[Event], cuts: list[int]
) -> None:
    """Whatever order the events arrive in, across batches: late first events included."""
    store = Store()
    for batch in in_batches(events, cuts):
        store.apply(batch, T0)
    counts, _ = store.totals()
    users, _ = reference(events)
    want: Counter[str] = Counter()
    for user in users.values():
        day = user.first_seen // DAY
        for n in PROFILE.retention_days:
            if day + n in user.activity_days:
                want[f"ret|{user.channel or '-'}|{day}|{n}"] += 1
    assert {k: v for k, v in counts.items() if k.startswith("ret|")} == dict(want)
    _, shared = ref.retention([e.to_json() for e in events], PROFILE)  # the integration tests' reference
    by_day: Counter[tuple[int, int]] = Counter()
    for key, n in want.items():
        _, _, day, after = key.split("|")
        by_day[int(day), int(after)] += n
    assert by_day == shared


def test_a_late_event_that_moves_the_cohort_moves_its_retention_too() -> None:
    store = Store()
    store.apply([Event("1", "u", "visit", T0), Event("2", "u", "visit", T0 + DAY)], T0)
    assert store.counts["ret|-|" + str(T0 // DAY) + "|1"] == 1
    store.apply([Event("3", "u", "visit", T0 - 5 * DAY)], T0)  # late: first seen five days earlier
    counts, _ = store.totals()
    old_day = T0 // DAY
    assert counts.get(f"cohort|-|{old_day}", 0) == 0
    assert counts.get(f"cohort|-|{old_day - 5}", 0) == 1
    assert counts.get(f"ret|-|{old_day}|1", 0) == 0  # withdrawn with the cohort it was counted in


def test_a_late_first_event_credits_the_retention_it_makes() -> None:
    """Visits on days 0 and 1, then a late visit on day -1: the new cohort (day -1) has the
    day-0 visit one day after it and the day-1 visit two days after it, so it is retained on
    days 1 and 2, as the direct computation says."""
    events = [Event("1", "u", "visit", T0), Event("2", "u", "visit", T0 + DAY)]
    late = Event("3", "u", "visit", T0 - DAY)
    store = Store()
    store.apply(events, T0)
    store.apply([late], T0 + DAY)  # a later, separate batch
    counts, _ = store.totals()
    new_day = (T0 - DAY) // DAY
    got = {k: v for k, v in counts.items() if k.startswith("ret|")}
    assert got == {f"ret|-|{new_day}|1": 1, f"ret|-|{new_day}|2": 1}
    _, want = ref.retention([e.to_json() for e in [*events, late]], PROFILE)
    assert got == {f"ret|-|{day}|{n}": k for (day, n), k in want.items()}


def test_event_type_counters_are_bounded() -> None:
    events = [
        Event("1", "u", "visit", T0),
        Event("2", "u", "promo_view", T0),
        Event("3", "u", "zz_custom", T0),
        Event("4", "u", "message_click", T0),
        Event("5", "u", "login", T0),
    ]
    counts = apply_events({}, events, T0, PROFILE).counts
    assert counts["ev|visit"] == 1 and counts["ev|message_click"] == 1 and counts["ev|login"] == 1
    assert counts["ev|other"] == 2  # types the profile does not name share one label


# --- 3. channel stickiness ----------------------------------------------------------------------------


def test_the_first_channel_seen_sticks() -> None:
    first = apply_events({}, [Event("1", "u", "visit", T0, "ads")], T0, PROFILE)
    assert first.records["u"].channel == "ads" and first.counts["users|ads"] == 1
    assert first.active_index == {"ads": {"u": T0}} and first.channels == {"ads"}
    later = apply_events(first.records, [Event("2", "u", "order", T0 + 1, "organic", 5.0)], T0, PROFILE)
    assert later.records["u"].channel == "ads"
    assert later.counts["orders|ads"] == 1 and later.sums["revenue|ads"] == 5.0
    assert "users|organic" not in later.counts and not later.index_removals


def test_a_user_first_seen_without_a_channel_moves_with_their_counts() -> None:
    first = apply_events(
        {},
        [
            Event("1", "u", "visit", T0),
            Event("2", "u", "register", T0 + 1),
            Event("3", "u", "order", T0 + 2, amount=5.0),
        ],
        T0,
        PROFILE,
    )
    assert first.records["u"].channel == "-"
    assert (first.counts["users|-"], first.counts["orders|-"], first.sums["revenue|-"]) == (1, 1, 5.0)
    moved = apply_events(first.records, [Event("4", "u", "visit", T0 + 3, channel="ads")], T0, PROFILE)
    counts = moved.counts
    assert (counts["users|-"], counts["users|ads"]) == (-1, 1)
    for k in range(3):  # visit, register, first_order
        assert (counts[f"stage|-|{k}"], counts[f"stage|ads|{k}"]) == (-1, 1)
    assert "stage|ads|3" not in counts
    assert (counts["orders|-"], counts["orders|ads"]) == (-1, 1)
    assert (counts["payers|-"], counts["payers|ads"]) == (-1, 1)
    assert (counts["registered|-"], counts["registered|ads"]) == (-1, 1)
    assert (moved.sums["revenue|-"], moved.sums["revenue|ads"]) == (-5.0, 5.0)
    assert moved.index_removals == {"-": ["u"]}
    assert moved.active_index == {"ads": {"u": T0 + 3}}
    assert "ads" in moved.channels
    stays = apply_events(moved.records, [Event("5", "u", "visit", T0 + 4, channel="organic")], T0, PROFILE)
    assert stays.records["u"].channel == "ads" and not stays.index_removals


def test_a_user_who_moves_within_one_batch_is_listed_for_removal() -> None:
    result = apply_events(
        {}, [Event("1", "u", "visit", T0), Event("2", "u", "visit", T0 + 1, "ads")], T0, PROFILE
    )
    assert result.records["u"].channel == "ads"
    assert result.index_removals == {"-": ["u"]}
    assert nonzero(result.counts).get("users|-") is None and result.counts["users|ads"] == 1


@LIGHT
@given(histories(ordered=False), st.lists(st.integers(0, 100), max_size=6))
def test_channel_moves_happen_once_and_only_from_no_channel(events: list[Event], cuts: list[int]) -> None:
    store = Store()
    for batch in in_batches(events, cuts):
        store.apply(batch, T0)
    users, _ = reference(events)
    first_channel: dict[str, str | None] = {}
    for ev in events:
        if ev.user_id in users and ev.user_id not in first_channel and PROFILE.is_activity(ev.type):
            first_channel[ev.user_id] = ev.channel
    moved = sorted(uid for uid, ch in first_channel.items() if ch is None and users[uid].channel is not None)
    assert sorted(uid for _, uid in store.removals) == moved
    assert {ch for ch, _ in store.removals} <= {"-"}


def test_a_channel_spelled_dash_means_no_channel() -> None:
    """`-` is the store's name for "no channel": a user who arrives with it can still move."""
    first = apply_events({}, [Event("1", "u", "visit", T0, "-")], T0, PROFILE)
    assert first.records["u"].channel == "-" and first.records["u"].to_json()["channel"] is None
    moved = apply_events(first.records, [Event("2", "u", "visit", T0 + 1, "ads")], T0, PROFILE)
    assert moved.records["u"].channel == "ads"


# --- 4. exactly-once transitions, across events and sweeps -----------------------------------------------


@st.composite
def worker_runs(draw: st.DrawFn, late: bool = False) -> tuple[list[tuple[str, object]], int]:
    """Steps of a worker: ('batch', events) and ('sweep', clock), the clock never going back.

    Without `late`, every event's ts is at or after the latest sweep; with it, some are older.
    """
    n = draw(st.integers(1, 30))
    codes = draw(st.lists(EVENT_CODES, min_size=n, max_size=n))
    m = draw(st.integers(0, 15))
    ops = draw(st.lists(st.integers(0, 3 * len(GAPS) * 4 - 1), min_size=m, max_size=m))
    clock = T0
    steps: list[tuple[str, object]] = []
    i = 0
    for op in ops:
        kind, rest = op % 3, op // 3
        if kind == 0:  # a sweep, some time later
            clock += GAPS[rest % len(GAPS)]
            steps.append(("sweep", clock))
            continue
        size = 1 + rest % 4
        batch = []
        for code in codes[i : i + size]:
            event, clock = decode_event(code, i, clock, late)
            batch.append(event)
            i += 1
        if batch:
            steps.append(("batch", batch))
    last = []  # what is left, in one batch
    for code in codes[i:]:
        event, clock = decode_event(code, i, clock, late)
        last.append(event)
        i += 1
    if last:
        steps.append(("batch", last))
    final = clock + draw(st.sampled_from(GAPS))
    return steps, final


def run_worker(steps: list[tuple[str, object]], final: int, only_user: str | None = None) -> Store:
    store = Store()
    swept = T0
    for kind, what in steps:
        if kind == "sweep":
            assert isinstance(what, int)
            store.sweep(swept, what)
            swept = what
        else:
            assert isinstance(what, list)
            store.apply([e for e in what if only_user in (None, e.user_id)], swept)
    store.sweep(swept, final)
    return store


def events_of(steps: list[tuple[str, object]]) -> list[Event]:
    return [e for _, what in steps if isinstance(what, list) for e in what]


@SETTINGS
@given(worker_runs())
def test_events_and_sweeps_count_every_transition_exactly_once(
    run: tuple[list[tuple[str, object]], int],
) -> None:
    steps, final = run
    store = run_worker(steps, final)
    events = events_of(steps)
    got = transitions(nonzero(store.counts))
    want = reference_transitions(events, final)
    assert got == want
    # spelled out: entries into each inactive state, and first appearances
    for state in ("silent", "churned", "dead"):
        assert sum(n for (_, b), n in got.items() if b == state) == sum(
            n for (_, b), n in want.items() if b == state
        )
    users, _ = reference(events)
    assert sum(n for (a, _), n in got.items() if a == "-") == len(users)


def test_a_worked_example_of_events_and_sweeps() -> None:
    store = Store()
    store.apply([Event("1", "u", "visit", T0)], T0)  # - -> new
    store.sweep(T0, T0 + DAY)  # new -> retained
    store.sweep(T0 + DAY, T0 + 3 * DAY)  # retained -> silent (idle 2d)
    store.apply([Event("2", "u", "visit", T0 + 4 * DAY)], T0 + 3 * DAY)  # silent -> retained: recalled
    store.sweep(T0 + 3 * DAY, T0 + 30 * DAY)  # retained -> silent -> churned -> dead
    assert transitions(store.counts) == Counter(
        {
            ("-", "new"): 1,
            ("new", "retained"): 1,
            ("retained", "silent"): 2,
            ("silent", "retained"): 1,
            ("silent", "churned"): 1,
            ("churned", "dead"): 1,
        }
    )


@SETTINGS
@given(worker_runs(late=True))
def test_with_late_events_each_user_still_walks_one_consistent_path(
    run: tuple[list[tuple[str, object]], int],
) -> None:
    """Late events may change a record but never re-count: per user, the counted transitions form
    one chain from `-` to the user's state at the final clock (entries minus exits)."""
    steps, final = run
    whole = run_worker(steps, final)
    summed: Counter[str] = Counter()
    for uid in USERS:
        alone = run_worker(steps, final, only_user=uid)  # users are independent of each other
        summed.update(alone.counts)
        if uid not in alone.records:
            assert not transitions(alone.counts)
            continue
        rec = alone.records[uid]
        assert rec.seen_until <= final
        flow = transitions(alone.counts)
        assert sum(n for (a, _), n in flow.items() if a == "-") == 1
        end = state_at(rec.first_seen, rec.last_active, final, TH).value
        for state in ("new", "retained", "silent", "churned", "dead"):
            entries = sum(n for (_, b), n in flow.items() if b == state)
            exits = sum(n for (a, _), n in flow.items() if a == state)
            assert entries - exits == (state == end)
        for a, b in flow:
            assert b != "new" or a == "-"  # nobody becomes new again
            assert a != b
    assert transitions(nonzero(summed)) == transitions(nonzero(whole.counts))


# --- 5. recall -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "came_from"),
    [
        (TH.silent_after, "silent"),
        (TH.silent_after + HOUR, "silent"),
        (TH.churn_after, "churned"),
        (TH.churn_after + DAY, "churned"),
        (TH.dead_after, "dead"),
        (TH.dead_after + 300 * DAY, "dead"),
    ],
)
def test_a_user_active_again_is_recalled_from_the_state_they_were_in(idle: int, came_from: str) -> None:
    created = apply_events({}, [Event("1", "u", "visit", T0)], T0, PROFILE)
    back = apply_events(created.records, [Event("2", "u", "order", T0 + idle)], T0, PROFILE)
    assert back.counts[f"tr|{came_from}|retained"] == 1
    # the time that made them idle is counted on the way, each crossing once
    path = ["new", "retained", "silent", "churned", "dead"]
    walked = path[: path.index(came_from) + 1]
    want = {f"tr|{a}|{b}": 1 for a, b in itertools.pairwise(walked)} | {f"tr|{came_from}|retained": 1}
    assert {k: v for k, v in back.counts.items() if k.startswith("tr|")} == want
    rec = back.records["u"]
    assert state_at(rec.first_seen, rec.last_active, T0 + idle, TH) is State.RETAINED


def test_a_recall_after_a_sweep_counts_the_sweeps_crossing_once() -> None:
    store = Store()
    store.apply([Event("1", "u", "visit", T0)], T0)
    store.sweep(T0, T0 + 6 * DAY)  # new -> retained -> silent -> churned
    store.apply([Event("2", "u", "visit", T0 + 7 * DAY)], T0 + 6 * DAY)
    assert transitions(store.counts) == Counter(
        {
            ("-", "new"): 1,
            ("new", "retained"): 1,
            ("retained", "silent"): 1,
            ("silent", "churned"): 1,
            ("churned", "retained"): 1,
        }
    )


def test_activity_just_before_the_threshold_is_no_recall() -> None:
    created = apply_events({}, [Event("1", "u", "visit", T0)], T0, PROFILE)
    back = apply_events(created.records, [Event("2", "u", "visit", T0 + TH.silent_after - 1)], T0, PROFILE)
    assert {k for k in back.counts if k.startswith("tr|")} == {"tr|new|retained"}


# --- 6. non-activity events --------------------------------------------------------------------------------


def test_non_activity_events_create_nobody() -> None:
    result = apply_events({}, [Event("1", "u", "message_delivered", T0, "ads")], T0, PROFILE)
    assert result.records == {}
    assert nonzero(result.counts) == {"ev|message_delivered": 1, "unknown_user_events": 1}
    assert not result.active_index and not result.first_index and not result.channels


def test_non_activity_events_neither_move_last_active_nor_recall() -> None:
    created = apply_events({}, [Event("1", "u", "visit", T0)], T0, PROFILE).records
    later = apply_events(created, [Event("2", "u", "message_delivered", T0 + 3 * DAY)], T0, PROFILE)
    rec = later.records["u"]
    assert rec.last_active == T0
    assert "u" not in later.active_index.get("-", {})
    assert later.counts["tr|silent|retained"] == 0
    assert later.counts["tr|retained|silent"] == 1  # the time that passed is still counted
    assert later.counts["applied"] == 1 and later.counts["unknown_user_events"] == 0


def test_channel_cost_events_add_to_the_channels_cost_and_touch_no_user() -> None:
    result = apply_events({}, [Event("1", "u", "channel_cost", T0, "ads", 250.0)], T0, ALL_ACTIVE)
    assert result.records == {}
    assert nonzero(result.sums) == {"cost|ads": 250.0}
    assert result.counts["unknown_user_events"] == 0 and result.counts["applied"] == 1


def test_with_no_activity_types_every_type_is_activity() -> None:
    result = apply_events({}, [Event("1", "u", "message_delivered", T0)], T0, ALL_ACTIVE)
    assert result.records["u"].last_active == T0 and result.counts["users|-"] == 1


@LIGHT
@given(histories(ordered=False))
def test_only_activity_events_create_users_and_move_last_active(events: list[Event]) -> None:
    store = Store()
    store.apply(events, T0)
    activity = [e for e in events if PROFILE.is_activity(e.type)]
    assert set(store.records) == {e.user_id for e in activity}
    for uid, rec in store.records.items():
        assert rec.last_active == max(e.ts for e in activity if e.user_id == uid)
    created_at: dict[str, int] = {}
    for i, e in enumerate(events):
        if PROFILE.is_activity(e.type):
            created_at.setdefault(e.user_id, i)
    unknown = sum(1 for i, e in enumerate(events) if i < created_at.get(e.user_id, len(events)))
    assert store.counts["unknown_user_events"] == unknown


# --- 7. de-duplication --------------------------------------------------------------------------------------


def test_a_duplicate_is_looked_up_in_the_bucket_of_its_hour_and_remembered_past_the_window() -> None:
    assert dedup_bucket(T0) == dedup_bucket(T0 + HOUR - 1) == T0 // HOUR
    assert dedup_bucket(T0 + HOUR) == T0 // HOUR + 1
    assert bucket_ttl_s(7 * 86_400) == 7 * 86_400 + 3_600  # written up to an hour before its last write


def test_event_digests() -> None:
    assert event_digest("e1") == event_digest("e1")
    assert len(event_digest("e1")) == 8 and isinstance(event_digest("e1"), bytes)
    assert event_digest("e1") != event_digest("e2")
    assert len(event_digest("用户" * 64)) == 8


@settings(max_examples=100, deadline=None)
@given(
    st.sets(
        st.text(min_size=1, max_size=128),
        max_size=50,
    )
)
def test_distinct_event_ids_have_distinct_digests(ids: set[str]) -> None:
    assume(all(not any(0xD800 <= ord(c) <= 0xDFFF for c in i) for i in ids))
    assert len({event_digest(i) for i in ids}) == len(ids)


@SETTINGS
@given(
    histories(ordered=False), st.lists(st.integers(0, 100), max_size=4), st.sampled_from([T0, T0 + 5 * DAY])
)
def test_applying_twice_equals_applying_once(events: list[Event], cuts: list[int], swept: int) -> None:
    once = Store()
    for batch in in_batches(events, cuts):
        once.apply_unseen(batch, swept)
    twice = Store()
    for batch in in_batches(events, cuts):
        twice.apply_unseen(batch, swept)
    before = (copy.deepcopy(twice.records), twice.totals())
    for batch in in_batches(events, cuts[::-1]):
        result = twice.apply_unseen(batch, swept)
        assert not result.records and not nonzero(result.counts)
    assert (twice.records, twice.totals()) == before == (once.records, once.totals())


@LIGHT
@given(histories(ordered=False), st.integers(0, 100), st.integers(0, 100))
def test_a_replay_that_overlaps_what_was_applied_changes_nothing(
    events: list[Event], cut: int, back: int
) -> None:
    """After a crash the worker re-reads from an older offset: the overlap is skipped by digest."""
    once = Store()
    once.apply_unseen(events, T0)
    replayed = Store()
    hi = cut % (len(events) + 1)
    lo = hi - back % (hi + 1)
    replayed.apply_unseen(events[:hi], T0)
    replayed.apply_unseen(events[lo:], T0)  # events[lo:hi] again
    assert replayed.records == once.records
    assert replayed.totals() == once.totals()


# --- purity and the rest of the result ------------------------------------------------------------


@LIGHT
@given(histories(ordered=False), st.integers(0, 100))
def test_apply_events_is_pure(events: list[Event], cut: int) -> None:
    head, tail = events[: cut % (len(events) + 1)], events[cut % (len(events) + 1) :]
    stored = apply_events({}, head, T0, PROFILE).records
    snapshot = copy.deepcopy(stored)
    first = apply_events(stored, tail, T0, PROFILE)
    assert stored == snapshot  # the input records are not mutated
    second = apply_events(stored, tail, T0, PROFILE)
    assert first.records == second.records and first.counts == second.counts and first.sums == second.sums
    assert first.watermark == max((e.ts for e in tail), default=0)


def test_untouched_users_are_not_in_the_result() -> None:
    stored = apply_events(
        {}, [Event("1", "u", "visit", T0), Event("2", "v", "visit", T0)], T0, PROFILE
    ).records
    result = apply_events(stored, [Event("3", "u", "visit", T0 + 1)], T0, PROFILE)
    assert set(result.records) == {"u"}
    assert apply_events(stored, [], T0, PROFILE).records == {}


def test_a_user_created_by_a_late_event_is_counted_at_the_sweep_clock() -> None:
    result = apply_events({}, [Event("1", "u", "visit", T0)], T0 + 3 * DAY, PROFILE)
    assert result.counts["tr|-|silent"] == 1
    assert result.records["u"].seen_until == T0 + 3 * DAY


def test_the_first_index_window_can_be_longer_than_the_new_window() -> None:
    event = Event("1", "u", "visit", T0)
    later = T0 + 2 * DAY  # past the one-day new window
    assert apply_events({}, [event], later, PROFILE).first_index == {}
    assert apply_events({}, [event], later, PROFILE, first_index_window=3 * DAY).first_index == {
        "-": {"u": T0}
    }


def test_a_first_seen_moved_back_past_the_window_leaves_the_first_index() -> None:
    """A late event older than the window makes the user's (later) index entry stale: it must
    go, or the user would count as new by the entry's time (found by tests/faults/test_fuzz.py)."""
    store = Store()
    store.apply([Event("1", "u", "visit", T0 + 10 * DAY)], T0 + 10 * DAY)
    assert store.first["-"] == {"u": T0 + 10 * DAY}
    result = store.apply([Event("2", "u", "visit", T0)], T0 + 10 * DAY)
    assert result.first_removals == {"-": ["u"]}
    assert store.records["u"].first_seen == T0
    assert store.first["-"] == {}


def test_sweep_counts_only_time_since_what_was_accounted() -> None:
    rec = UserRecord(first_seen=T0, last_active=T0, seen_until=T0)
    assert sweep({"u": rec}, T0, T0 + 3 * DAY, PROFILE).counts == Counter(
        {"tr|new|retained": 1, "tr|retained|silent": 1}
    )
    assert sweep({"u": rec}, T0 + 3 * DAY, T0 + 4 * DAY, PROFILE).counts == Counter()
    ahead = UserRecord(first_seen=T0, last_active=T0, seen_until=T0 + 3 * DAY)
    assert sweep({"u": ahead}, T0, T0 + 5 * DAY, PROFILE).counts == Counter({"tr|silent|churned": 1})


# --- records ------------------------------------------------------------------------------------------


@LIGHT
@given(
    st.integers(0, 2**42),
    st.integers(0, 2**42),
    st.integers(0, 2**42),
    st.sampled_from(["-", "ads", "organic"]) | st.text(max_size=20),
    st.integers(-1, 10),
    st.integers(0, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dictionaries(st.text(max_size=10), st.integers(0, 10**6), max_size=5),
    st.integers(0, 2**16 - 1),
)
def test_records_pack_and_unpack_losslessly(
    f: int,
    la: int,
    su: int,
    ch: str,
    stage: int,
    orders: int,
    revenue: float,
    counts: dict[str, int],
    retained: int,
) -> None:
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in ch + "".join(counts)))
    rec = UserRecord(f, la, su, ch, stage, orders, revenue, counts, retained)
    raw = rec.pack()
    assert isinstance(raw, bytes)
    assert UserRecord.unpack(raw) == rec
    assert UserRecord.unpack(raw.decode()) == rec


def test_records_keep_their_activity_days_and_read_the_older_layouts() -> None:
    """Records written before activity days were kept (9 or 14 fields) still read, as no days."""
    plain = UserRecord(T0, T0, T0, retained=3)
    assert UserRecord.unpack(plain.pack()) == plain
    with_days = UserRecord(T0, T0, T0, days=0b101)
    assert UserRecord.unpack(with_days.pack()) == with_days
    assert with_days.pack().endswith(b",5]")
    long_days = UserRecord(T0, T0, T0, days=1 << 3650, onboarding=T0)  # retention day 3650
    assert UserRecord.unpack(long_days.pack()) == long_days
    older = b'[1,2,3,"-",-1,0,0,{},2,[],[],{},[],7]'
    assert UserRecord.unpack(older) == UserRecord(1, 2, 3, retained=2, onboarding=7)


def test_a_record_copy_is_independent() -> None:
    rec = UserRecord(T0, T0, T0, counts={"order": 1})
    dup = rec.copy()
    dup.counts["order"] = 2
    dup.last_active += 1
    assert rec.counts == {"order": 1} and rec.last_active == T0
    assert dup == UserRecord(T0, T0 + 1, T0, counts={"order": 2})


def test_a_record_as_json() -> None:
    rec = UserRecord(T0, T0 + 1, T0 + 2, "-", 1, 2, 7.5, {"order": 2})
    assert rec.to_json() == {
        "first_seen": T0,
        "last_active": T0 + 1,
        "channel": None,
        "funnel_stage_index": 1,
        "orders": 2,
        "revenue": 7.5,
        "event_counts": {"order": 2},
        "traits": {},
    }


def test_high_value_loss_is_counted_in_the_month_of_the_crossing_not_of_the_sweep() -> None:
    """A late sweep must not move the churn of a high-value user into another month."""
    end_of_month = 1_701_302_400_000 - 6 * DAY  # 2023-11-24T00:00Z; churned (5d idle) on 11-29
    rec = UserRecord(end_of_month, end_of_month, end_of_month, "ads", 0, 1, 50.0)
    early = sweep({"u": rec}, end_of_month, end_of_month + 5 * DAY, PROFILE).counts
    late = sweep({"u": rec}, end_of_month, end_of_month + 9 * DAY, PROFILE).counts
    assert early["hv|lost|2023-11"] == late["hv|lost|2023-11"] == 1
    assert "hv|lost|2023-12" not in late
