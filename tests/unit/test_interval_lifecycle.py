"""Lifecycle per interval: the batch's counter differences, summed over any batching and any
arrival order, equal `tests.reference.interval_lifecycle` in several time zones."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import date, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import daysets
from service.core.batch import apply_events
from service.core.calendar import Calendar
from service.core.dedup import event_digest
from service.core.events import Event
from service.core.interval_lifecycle import contributions
from service.core.intervals import GRANULARITIES, IntervalError, bounds, first_day, granularity, index
from service.core.profile import Profile, parse_profile
from service.core.records import UserRecord
from tests import reference as ref

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_709_000_000_000  # 2024-02-27: histories cross both DST changes of New York
ZONES = ("UTC", "Asia/Shanghai", "America/New_York")


def profile_in(zone: str) -> Profile:
    return parse_profile(
        {
            "name": "test",
            "time_zone": zone,
            "lifecycle": {"new_window": "2d", "silent_after": "3d", "churn_after": "7d", "dead_after": "20d"},
            "activity_types": ["visit", "order"],
            "funnel": [{"name": "visit", "event": "visit"}, {"name": "order", "event": "order"}],
        }
    )


PROFILES = {zone: profile_in(zone) for zone in ZONES}


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events of a few users in time order: gaps from an hour (local midnights) to over a month,
    some not activity, some channels arriving after the first event, a few repeated ids."""
    n = draw(st.integers(1, 45))
    ts = T0 + draw(st.integers(0, DAY))
    out: list[Event] = []
    for i in range(n):
        ts += draw(st.sampled_from([0, HOUR, 5 * HOUR, 11 * HOUR, DAY, 3 * DAY, 8 * DAY, 33 * DAY]))
        uid = draw(st.sampled_from(["a", "b", "c", "d", "e"]))
        etype = draw(st.sampled_from(["visit", "visit", "order", "message_delivered"]))
        channel = draw(st.sampled_from([None, None, "ads", "organic"]))
        eid = draw(st.sampled_from([f"e{i}", f"e{i}", f"e{i}", f"e{max(i - 1, 0)}"]))
        out.append(Event(eid, uid, etype, ts, channel))
    return out


def deliver(
    events: list[Event], order: list[int], cuts: list[int], profile: Profile
) -> tuple[dict[str, UserRecord], Counter[str]]:
    """Apply `events` in the delivery `order`, in batches split at `cuts`, de-duplicated by id
    digest as the worker does; the records and the summed counters."""
    delivered = [events[i] for i in order]
    records: dict[str, UserRecord] = {}
    counts: Counter[str] = Counter()
    seen: set[bytes] = set()
    swept = min(e.ts for e in events)
    bounds_ = [0, *sorted(c % (len(delivered) + 1) for c in cuts), len(delivered)]
    for lo, hi in itertools.pairwise(bounds_):
        fresh = []
        for ev in delivered[lo:hi]:
            digest = event_digest(ev.event_id)
            if digest not in seen:
                seen.add(digest)
                fresh.append(ev)
        result = apply_events(records, fresh, swept, profile)
        records.update(result.records)
        counts.update(result.counts)
    return records, counts


def served(counts: Counter[str], g: str, channel: str) -> Counter[tuple[str, str]]:
    """The `lci|` counters of one granularity and channel, keyed as the reference keys them."""
    out: Counter[tuple[str, str]] = Counter()
    for name, n in counts.items():
        if not name.startswith("lci|"):
            continue
        _, gran, start, ch, what = name.split("|")
        if gran == g and ch == channel and n:
            out[(Calendar.iso(int(start)), what)] += n
    return out


def first_of_each_id(events: list[Event], order: list[int]) -> list[int]:
    """The indexes of the events applied: in delivery order, the first of each event id."""
    ids: set[str] = set()
    out = []
    for i in order:
        if events[i].event_id not in ids:
            ids.add(events[i].event_id)
            out.append(i)
    return out


@settings(max_examples=300, deadline=None)
@given(
    histories(),
    st.sampled_from(ZONES),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 100), max_size=6),
)
def test_counters_equal_the_reference_in_any_order_and_batching(
    events: list[Event], zone: str, rnd: random.Random, cuts: list[int]
) -> None:
    profile = PROFILES[zone]
    order = list(range(len(events)))
    rnd.shuffle(order)
    records, counts = deliver(events, order, cuts, profile)
    as_delivered = [events[i].to_json() for i in order]
    users = ref.reference(as_delivered, profile)
    assert all(n >= 0 for name, n in counts.items() if name.startswith("lci|"))
    for g in GRANULARITIES:
        assert served(counts, g, "*") == +ref.interval_lifecycle(as_delivered, profile, g), g
        for channel in {u.channel or "-" for u in users.values()}:
            want = ref.interval_lifecycle(as_delivered, profile, g, channel)
            assert served(counts, g, channel) == +want, (g, channel)
    applied = first_of_each_id(events, order)
    in_order, _ = deliver(events, sorted(applied, key=lambda i: (events[i].ts, i)), [], profile)
    assert active_days(records, profile) == active_days(in_order, profile)


def active_days(records: dict[str, UserRecord], profile: Profile) -> dict[str, list[int]]:
    """Each user's active local days (the bits are relative to `first_seen`, which depends on
    the order non-activity events came in)."""
    cal = profile.calendar
    return {
        u: [cal.day(r.first_seen) + k for k in daysets.days_of(r.active_days)] for u, r in records.items()
    }


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 1 << 4000), st.integers(0, 3000))
def test_day_sets_round_trip_and_stay_within_their_bound(bits: int, shift: int) -> None:
    for value in (bits, bits << shift, (1 << shift) | 1):
        stored = daysets.encode(value)
        assert daysets.decode(stored) == value
        # one character per 6 days, as stored: JSON (the str() of a list adds a space per item)
        assert len(orjson.dumps(stored)) <= value.bit_length() // 6 + 12


def test_a_daily_user_and_a_rare_one_are_short_in_run_form() -> None:
    daily = (1 << 1000) - 1  # active every day for 1000 days
    rare = sum(1 << (365 * k) for k in range(5))  # once a year for five years
    assert daysets.encode(daily) == [0, 1000]
    assert daysets.encode(rare) == [0, 1, 364, 1, 364, 1, 364, 1, 364, 1]
    assert daysets.decode(daysets.encode(rare)) == rare


def test_a_stored_day_set_of_neither_form_is_refused() -> None:
    with pytest.raises(daysets.DaySetError):
        daysets.decode([1, 2, 3])


@settings(max_examples=300, deadline=None)
@given(st.integers(-3000, 30000))
def test_intervals_are_mondays_weeks_and_calendar_months(day: int) -> None:
    d = date(1970, 1, 1) + timedelta(days=day)
    week_start = d - timedelta(days=d.weekday())
    month_start = d.replace(day=1)
    for g, start in (("day", d), ("week", week_start), ("month", month_start)):
        gran = granularity(g)
        i = index(gran, day)
        lo, hi = bounds(gran, i)
        assert Calendar.iso(first_day(gran, i)) == start.isoformat()
        assert lo <= day < hi and index(gran, hi) == i + 1 and index(gran, lo - 1) == i - 1


def test_an_unknown_granularity_says_which_exist() -> None:
    with pytest.raises(IntervalError, match="day, week, month"):
        granularity("year")


def test_contributions_of_one_user() -> None:
    # active on days 0, 1 and 5 of the record: new, returning, dormant, resurrecting, dormant
    assert contributions(0b100011, 100, "day") == [
        (100, "new"),
        (101, "returning"),
        (102, "dormant"),
        (105, "resurrecting"),
        (106, "dormant"),
    ]
