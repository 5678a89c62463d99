"""Named funnels: a user's step and the counters per channel and entry week equal
`tests/reference.py` for any history, batch cuts and arrival order (late events included)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events
from service.core.events import Event
from service.core.funnel_rules import FunnelStage, NamedFunnel, Order
from service.core.named_funnels import position, week_of
from service.core.profile import Profile, parse_profile
from service.core.records import UserRecord
from tests import reference as ref

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_700_000_000_000  # 2023-11-14, a Tuesday

PROFILE = parse_profile(
    {
        "name": "test",
        "lifecycle": {"new_window": "2d", "silent_after": "3d", "churn_after": "7d", "dead_after": "20d"},
        "time_zone": "Europe/Paris",
        "funnel": [{"name": "visit", "event": "visit"}, {"name": "first_order", "event": "order"}],
        "funnels": {
            "signup": {"order": "strict", "window": "4d", "steps": ["visit", "register", "verify"]},
            "buyer": {
                "order": "any",
                "window": "2d",
                "steps": ["register", "order", {"name": "repeat", "event": "order", "nth": 2}],
            },
            "orders": {
                "order": "strict",
                "steps": [
                    "order",
                    {"name": "second", "event": "order", "nth": 2},
                    {"name": "third", "event": "order", "nth": 3},
                ],
            },
        },
    }
)
TYPES = ["visit", "register", "verify", "order", "identify"]


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A few users' events at times that hit the windows' edges exactly, in any arrival order."""
    n = draw(st.integers(1, 40))
    out: list[Event] = []
    for i in range(n):
        ts = (
            T0
            + draw(st.integers(0, 24)) * draw(st.sampled_from([HOUR, DAY, 2 * DAY]))
            + draw(st.sampled_from([0, 1]))
        )
        uid = draw(st.sampled_from(["a", "b", "c", "d"]))
        etype = draw(st.sampled_from(TYPES))
        channel = draw(st.sampled_from([None, None, "ads", "organic"]))
        out.append(Event(f"e{i}", uid, etype, ts, channel))
    return out


def run(
    events: list[Event], cuts: list[int], profile: Profile = PROFILE
) -> tuple[dict[str, UserRecord], Counter[str]]:
    records: dict[str, UserRecord] = {}
    counts: Counter[str] = Counter()
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        result = apply_events(records, events[lo:hi], T0, profile)
        records.update(result.records)
        counts.update(result.counts)
    return records, counts


def funnel_counts(counts: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.startswith(("fn|", "fnc|")) and v}


def as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    return [e.to_json() for e in events]


def expected(users: dict[str, ref.RefUser], profile: Profile = PROFILE) -> dict[str, int]:
    """The counters the reference says, per channel and per channel and entry week."""
    out: dict[str, int] = {}
    channels = {u.channel or "-" for u in users.values()}
    for funnel in profile.funnels:
        weeks = {
            ref.entry_week(p[1], profile) for u in users.values() if (p := ref.funnel_position(u, funnel))
        }
        for ch in channels:
            for k, n in enumerate(ref.named_funnel_users(users, profile, funnel.name, ch)):
                if n:
                    out[f"fn|{funnel.name}|{ch}|{k}"] = n
            for week in weeks:
                for k, n in enumerate(ref.named_funnel_users(users, profile, funnel.name, ch, week)):
                    if n:
                        out[f"fnc|{funnel.name}|{ch}|{week}|{k}"] = n
    return out


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(0, 100), max_size=5))
def test_counters_equal_the_reference_for_any_batch_cuts(events: list[Event], cuts: list[int]) -> None:
    records, counts = run(events, cuts)
    users = ref.reference(as_dicts(events), PROFILE)
    assert funnel_counts(counts) == expected(users)
    assert all(v >= 0 for k, v in counts.items() if k.startswith(("fn|", "fnc|")))
    for uid, user in users.items():  # each record keeps the earliest times the funnels need
        keep = {"visit": 1, "register": 1, "verify": 1, "order": 3}
        want = {t: sorted(ts)[: keep[t]] for t, ts in user.times.items() if t in keep}
        assert records[uid].firsts == want
        assert UserRecord.unpack(records[uid].pack()) == records[uid]


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter(events: list[Event], rnd: Any) -> None:
    """Late events included: any order of arrival gives the counts of the time-sorted history
    (summed over channels, which follow the first one to arrive)."""
    in_time = sorted(events, key=lambda e: e.ts)
    shuffled = list(events)
    rnd.shuffle(shuffled)

    def by_funnel(counts: Counter[str]) -> Counter[str]:
        out: Counter[str] = Counter()
        for name, n in funnel_counts(counts).items():
            parts = name.split("|")
            del parts[2]  # the channel
            out["|".join(parts)] += n
        return +out

    assert by_funnel(run(shuffled, [len(events) // 2])[1]) == by_funnel(run(in_time, [])[1])
    users = ref.reference(as_dicts(in_time), PROFILE)
    for funnel in PROFILE.funnels:
        want = ref.named_funnel_users(users, PROFILE, funnel.name)
        got = by_funnel(run(shuffled, [])[1])
        assert [got[f"fn|{funnel.name}|{k}"] for k in range(len(funnel.steps))] == want


def test_no_named_funnels_no_times_kept() -> None:
    plain = parse_profile({"lifecycle": PROFILE_LIFECYCLE, "funnel": [{"name": "visit", "event": "visit"}]})
    records, counts = run([Event("e1", "a", "visit", T0), Event("e2", "a", "order", T0 + DAY)], [], plain)
    assert records["a"].firsts == {} and funnel_counts(counts) == {}


PROFILE_LIFECYCLE = {"new_window": "2d", "silent_after": "3d", "churn_after": "7d", "dead_after": "20d"}

REGISTER_THEN_ORDER = NamedFunnel(
    "first_order_7d",
    (FunnelStage("register", "register"), FunnelStage("order", "order")),
    Order.STRICT,
    7 * DAY,
)
VISIT_REGISTER_VERIFY = NamedFunnel(
    "signup",
    (FunnelStage("visit", "visit"), FunnelStage("register", "register"), FunnelStage("verify", "verify")),
    Order.STRICT,
)


def test_a_step_at_the_end_of_the_window_counts_and_one_after_does_not() -> None:
    assert position({"register": [T0], "order": [T0 + 7 * DAY]}, REGISTER_THEN_ORDER) == (1, T0)
    assert position({"register": [T0], "order": [T0 + 7 * DAY + 1]}, REGISTER_THEN_ORDER) == (0, T0)
    assert position({"order": [T0]}, REGISTER_THEN_ORDER) is None  # never entered


def test_strict_order_stops_at_the_first_step_out_of_order() -> None:
    # register before the first visit: the chain stops at visit, whatever came later
    assert position({"visit": [T0 + 1], "register": [T0], "verify": [T0 + 2]}, VISIT_REGISTER_VERIFY) == (
        0,
        T0 + 1,
    )
    assert position({"visit": [T0], "register": [T0], "verify": [T0]}, VISIT_REGISTER_VERIFY) == (
        2,
        T0,
    )  # ties count
    assert position({"visit": [T0], "verify": [T0 + 1]}, VISIT_REGISTER_VERIFY) == (0, T0)


def test_any_order_counts_the_furthest_step_within_the_window_from_entry() -> None:
    funnel = NamedFunnel("f", VISIT_REGISTER_VERIFY.steps, Order.ANY, DAY)
    assert position({"verify": [T0]}, funnel) == (2, T0)  # the furthest, as the core path counts
    assert position({"verify": [T0 + DAY + 1], "register": [T0]}, funnel) == (1, T0)
    assert position({"verify": [T0], "visit": [T0 + DAY]}, funnel) == (2, T0)


def test_weeks_start_on_monday() -> None:
    monday = 19674  # 2023-11-13
    assert [week_of(monday + i) for i in range(7)] == [monday] * 7
    assert week_of(monday + 7) == monday + 7 and week_of(monday - 1) == monday - 7
    assert week_of(0) == -3  # 1970-01-01 was a Thursday


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.booleans(),
    st.integers(0, 3),
    st.dictionaries(st.sampled_from(TYPES), st.lists(st.integers(0, 10 * DAY), min_size=1, max_size=3)),
)
def test_records_keep_their_funnel_times_beside_every_other_tail(
    triggers: bool, traits: bool, days: int, offsets: dict[str, list[int]]
) -> None:
    rec = UserRecord(T0, T0, T0, days=days)
    rec.firsts = {t: sorted(T0 + x for x in xs) for t, xs in offsets.items()}
    if triggers:
        rec.sent = [T0]
    if traits:
        rec.traits = {"plan": "gold"}
    assert UserRecord.unpack(rec.pack()) == rec
