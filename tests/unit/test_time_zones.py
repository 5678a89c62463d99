"""Every day boundary follows the profile's `time_zone`: cohorts, retention day N, high-value
months, DAU / WAU / MAU windows, history days and audiences' day bounds.

The core is compared with `tests.reference`, which works local days out with `zoneinfo`
directly, on generated histories in UTC, Asia/Shanghai (+8, no DST) and America/New_York
(whose histories here cross both DST changes of 2026); the directed tests are the cases an
operator would check by hand.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.audience_filters import AudienceFilterError, TimeBound, parse_filter
from service.core.batch import apply_events, sweep
from service.core.calendar import Calendar
from service.core.events import Event
from service.core.history import day_of
from service.core.indicators import ACTIVE_DAYS, active_since, clock_day
from service.core.profile import Profile, parse_profile
from service.core.records import UserRecord
from tests import reference as ref

HOUR = 3_600_000
DAY = 24 * HOUR
ZONES = ["UTC", "Asia/Shanghai", "America/New_York"]
# New York's spring change (2026-03-08) and autumn change (2026-11-01) lie inside the
# histories started from these instants; Shanghai and UTC have none.
STARTS = [1_772_755_200_000, 1_792_800_000_000]  # 2026-03-06T00:00Z, 2026-10-24T00:00Z
GAPS = [0, 1, HOUR, 5 * HOUR, 7 * HOUR + 30 * 60_000, 16 * HOUR, 23 * HOUR, DAY, DAY + HOUR, 2 * DAY, 6 * DAY]
USERS = ["a", "b", "c", "d"]
TYPES = ["visit", "visit", "order", "register", "message_delivered"]
CHANNELS = [None, None, "ads", "organic"]


def _profile(zone: str) -> Profile:
    return parse_profile(
        {
            "name": "tz",
            "time_zone": zone,
            "lifecycle": {"new_window": "1d", "silent_after": "2d", "churn_after": "5d", "dead_after": "12d"},
            "activity_types": ["visit", "register", "order"],
            "funnel": [{"name": "visit", "event": "visit"}, {"name": "first_order", "event": "order"}],
            "retention_days": [1, 2, 7],
            "rfm": {"recency": "3d", "frequency": 2, "monetary": 12},
            "triggers": {
                "recall": {"silent": False, "churned": False, "dead": False},
                "renewal": {"enabled": False},
                "onboarding": {"enabled": False},
            },
        }
    )


PROFILES = {zone: _profile(zone) for zone in ZONES}


def _ms(text: str, zone: str) -> int:
    """A local wall time in `zone` as epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events at all hours of the day; about one in five arrives late (up to 3 days), so
    cohorts move back and retention is judged again."""
    clock = draw(st.sampled_from(STARTS))
    out: list[Event] = []
    for i in range(draw(st.integers(1, 30))):
        clock += draw(st.sampled_from(GAPS))
        late = draw(st.sampled_from([0, 0, 0, 0, 5 * HOUR, 3 * DAY]))
        etype = draw(st.sampled_from(TYPES))
        amount = draw(st.sampled_from([None, 2.5, 10.0])) if etype == "order" else None
        user, channel = draw(st.sampled_from(USERS)), draw(st.sampled_from(CHANNELS))
        out.append(Event(f"e{i}", user, etype, clock - late, channel, amount))
    return out


def _apply(
    events: list[Event], cuts: list[int], profile: Profile
) -> tuple[dict[str, UserRecord], Counter[str]]:
    records: dict[str, UserRecord] = {}
    counts: Counter[str] = Counter()
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    swept = min(e.ts for e in events)
    for lo, hi in itertools.pairwise(bounds):
        result = apply_events(records, events[lo:hi], swept, profile)
        records.update(result.records)
        counts.update(result.counts)
    return records, counts


def _day_counters(counts: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.startswith(("cohort|", "ret|")) and v}


def _expected_day_counters(events: list[Event], profile: Profile) -> dict[str, int]:
    docs = [e.to_json() for e in events]
    want: dict[str, int] = {}
    for channel in {u.channel or "-" for u in ref.reference(docs, profile).values()}:
        sizes, retained = ref.retention(docs, profile, channel)
        want.update({f"cohort|{channel}|{d}": n for d, n in sizes.items() if n})
        want.update({f"ret|{channel}|{d}|{after}": n for (d, after), n in retained.items() if n})
    return want


# --- properties against the reference -----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(histories(), st.lists(st.integers(0, 100), max_size=4), st.sampled_from(ZONES))
def test_cohorts_and_retention_are_the_references_local_days(
    events: list[Event], cuts: list[int], zone: str
) -> None:
    profile = PROFILES[zone]
    _, counts = _apply(events, cuts, profile)
    assert _day_counters(counts) == _expected_day_counters(events, profile)


@settings(max_examples=100, deadline=None)
@given(histories(), st.sampled_from(ZONES))
def test_high_value_users_are_gained_in_the_local_month_of_the_crossing(
    events: list[Event], zone: str
) -> None:
    profile = PROFILES[zone]
    ordered = sorted(events, key=lambda e: e.ts)  # in time order: the crossing order is the reference's
    _, counts = _apply(ordered, [], profile)
    users = ref.reference([e.to_json() for e in ordered], profile)
    revenue: Counter[str] = Counter()
    want: Counter[str] = Counter()
    for ev in ordered:
        if ev.type == "order" and ev.user_id in users and ev.amount:
            before = revenue[ev.user_id]
            revenue[ev.user_id] += ev.amount
            if before < profile.rfm.monetary <= revenue[ev.user_id]:
                want[f"hv|gained|{ref.local_month(ev.ts, profile)}"] += 1
    assert {k: v for k, v in counts.items() if k.startswith("hv|gained|")} == dict(want)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1_000_000_000_000, 2_500_000_000_000),
    st.lists(st.integers(-40 * DAY, 2 * HOUR), min_size=1, max_size=20),
    st.sampled_from(ZONES),
)
def test_active_user_windows_are_the_local_days_ending_with_the_clocks_day(
    now: int, idle: list[int], zone: str
) -> None:
    profile = PROFILES[zone]
    users = {f"u{i}": ref.RefUser(now + d, now + d) for i, d in enumerate(idle)}
    got = {
        name: sum(1 for u in users.values() if u.last_active >= active_since(now, days, profile.calendar))
        for name, days in ACTIVE_DAYS.items()
    }
    assert got == ref.active_users(users, now, profile)
    assert clock_day(now, profile.calendar) == ref.local_day(now, profile)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4_000_000_000_000), st.sampled_from(ZONES))
def test_history_days_and_day_bounds_are_local(ms: int, zone: str) -> None:
    profile = PROFILES[zone]
    cal = profile.calendar
    assert day_of(ms, cal) == ref.local_date(ms, profile).isoformat()
    day = ref.local_day(ms, profile)
    start = TimeBound(day=day).resolve(0, cal)  # a day bound: the first instant of that local day
    assert ref.local_day(start, profile) == day and ref.local_day(start - 1, profile) == day - 1


# --- directed cases ------------------------------------------------------------------------------


def test_half_past_eleven_and_half_past_midnight_in_shanghai_are_two_days() -> None:
    """One UTC day (15:30Z and 16:30Z), two Shanghai days: two cohorts there and a day-1 return."""
    late, early = _ms("2026-03-01T23:30", "Asia/Shanghai"), _ms("2026-03-02T00:30", "Asia/Shanghai")
    assert late // DAY == early // DAY  # the same UTC day
    events = [
        Event("1", "night", "visit", late),
        Event("2", "morning", "visit", early),
        Event("3", "night", "visit", early + 5 * 60_000),
    ]
    for zone, cohorts, returned in (
        ("Asia/Shanghai", {"2026-03-01": 1, "2026-03-02": 1}, {"2026-03-01": 1}),
        ("UTC", {"2026-03-01": 2}, {}),
    ):
        profile = PROFILES[zone]
        _, counts = _apply(events, [1], profile)
        got = {
            Calendar.iso(int(k.split("|")[2])): v for k, v in counts.items() if k.startswith("cohort|") and v
        }
        back = {
            Calendar.iso(int(k.split("|")[2])): v for k, v in counts.items() if k.startswith("ret|-|") and v
        }
        assert (got, back) == (cohorts, returned), zone
        assert _day_counters(counts) == _expected_day_counters(events, profile)


def test_a_new_york_user_keeps_retention_day_n_across_the_spring_change() -> None:
    """First seen Saturday 2026-03-07 at noon (EST), back Sunday 03-08 at 23:30 (EDT, the 23-hour
    day) and the next Saturday 03-14 at 23:30: days 1 and 7 in New York. In UTC the visits fall
    on 03-09 and 03-15, days 2 and 8."""
    zone = "America/New_York"
    events = [
        Event("1", "u", "visit", _ms("2026-03-07T12:00", zone)),
        Event("2", "u", "visit", _ms("2026-03-08T23:30", zone)),
        Event("3", "u", "visit", _ms("2026-03-14T23:30", zone)),
    ]
    first = Calendar.from_iso("2026-03-07")
    _, counts = _apply(events, [], PROFILES[zone])
    assert _day_counters(counts) == {f"cohort|-|{first}": 1, f"ret|-|{first}|1": 1, f"ret|-|{first}|7": 1}
    _, utc = _apply(events, [], PROFILES["UTC"])
    assert _day_counters(utc) == {f"cohort|-|{first}": 1, f"ret|-|{first}|2": 1}  # day 8 is not counted


def test_a_late_event_across_the_autumn_change_moves_the_new_york_cohort_back() -> None:
    """Visits on 11-01 (the 25-hour day) at 23:30 and on 11-02 at 00:30 local; then a late
    visit on 10-31 at 23:59 EDT: the cohort moves to 10-31 and both visits become day 1 and 2."""
    zone = "America/New_York"
    profile = PROFILES[zone]
    records, counts = _apply(
        [
            Event("1", "u", "visit", _ms("2026-11-01T23:30", zone)),
            Event("2", "u", "visit", _ms("2026-11-02T00:30", zone)),
        ],
        [],
        profile,
    )
    result = apply_events(records, [Event("3", "u", "visit", _ms("2026-10-31T23:59", zone))], 0, profile)
    counts.update(result.counts)
    first = Calendar.from_iso("2026-10-31")
    assert _day_counters(counts) == {f"cohort|-|{first}": 1, f"ret|-|{first}|1": 1, f"ret|-|{first}|2": 1}


def test_a_high_value_churn_is_counted_in_the_local_month() -> None:
    """Churned (5 days idle) at 2026-03-31T18:00Z: still March in UTC, April in Shanghai."""
    churn = 1_774_980_000_000  # 2026-03-31T18:00:00Z = 2026-04-01T02:00 in Shanghai
    rec = UserRecord(churn - 5 * DAY, churn - 5 * DAY, churn - 5 * DAY, "ads", 0, 1, 50.0)
    for zone, month in (("UTC", "2026-03"), ("Asia/Shanghai", "2026-04")):
        counts = sweep({"u": rec}, churn - 5 * DAY, churn + DAY, PROFILES[zone]).counts
        assert {k: v for k, v in counts.items() if k.startswith("hv|")} == {f"hv|lost|{month}": 1}, zone


def test_dau_is_today_from_local_midnight_not_the_last_24_hours() -> None:
    zone = "Asia/Shanghai"
    cal = PROFILES[zone].calendar
    now = _ms("2026-03-02T00:30", zone)
    assert active_since(now, 1, cal) == _ms("2026-03-02T00:00", zone)
    assert active_since(now, 7, cal) == _ms("2026-02-24T00:00", zone)
    ny = PROFILES["America/New_York"].calendar
    after_change = _ms("2026-03-09T12:00", "America/New_York")  # the 7 days hold the 23-hour day
    assert active_since(after_change, 7, ny) == _ms("2026-03-03T00:00", "America/New_York")


def test_an_audience_day_bound_is_local_midnight_and_reads_back_as_the_day() -> None:
    stages = ["visit"]
    f = parse_filter({"entered_since": "2026-03-02", "entered_before": "2026-03-09"}, stages)
    assert f.entered_since == TimeBound(day=Calendar.from_iso("2026-03-02"))
    assert f.to_json(stages) == {"entered_since": "2026-03-02", "entered_before": "2026-03-09"}
    assert parse_filter(f.to_json(stages), stages) == f
    assert f.entered_since is not None
    assert f.entered_since.resolve(0, PROFILES["Asia/Shanghai"].calendar) == _ms(
        "2026-03-02T00:00", "Asia/Shanghai"
    )
    assert f.entered_since.resolve(0, PROFILES["UTC"].calendar) == _ms("2026-03-02T00:00", "UTC")
    other = parse_filter({"entered_since": "2026-03-03", "entered_before": "2026-03-09"}, stages)
    instant = parse_filter({"entered_since": "2026-03-02T00:00:00Z", "entered_before": "2026-03-09"}, stages)
    assert len({f.fingerprint(), other.fingerprint(), instant.fingerprint()}) == 3  # cursors bind to the day
    with pytest.raises(AudienceFilterError, match="entered_since: '2026-02-30' is not a day"):
        parse_filter({"entered_since": "2026-02-30"}, stages)


def test_a_named_audience_may_bound_by_unquoted_days_in_yaml() -> None:
    """YAML reads `2026-03-01` as a date: it is the day, at the profile's local midnight."""
    doc = yaml.safe_load(
        "time_zone: Asia/Shanghai\n"
        "lifecycle: {new_window: 1d, silent_after: 2d, churn_after: 5d, dead_after: 12d}\n"
        "funnel: [{name: visit, event: visit}]\n"
        "audiences:\n"
        "  silent_in_march: {state: [silent], entered_since: 2026-03-01, entered_before: 2026-04-01}\n"
    )
    (audience,) = parse_profile(doc).audiences
    assert audience.filter.to_json(["visit"])["entered_since"] == "2026-03-01"
    assert audience.filter.entered_since is not None
    assert (
        audience.filter.entered_since.resolve(0, Calendar("Asia/Shanghai")) == 1_772_294_400_000
    )  # 02-28T16:00Z


def test_a_profile_names_its_time_zone_or_fails_at_start_up() -> None:
    assert PROFILES["Asia/Shanghai"].calendar == Calendar("Asia/Shanghai")
    assert _profile("UTC").calendar.is_utc
    with pytest.raises(ValueError, match="time_zone"):
        _profile("Mars/Olympus_Mons")
