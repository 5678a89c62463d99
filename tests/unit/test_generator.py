"""The synthetic generator: valid, deterministic, ordered, streamed, and shaped like real products."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from functools import cache
from itertools import islice, pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.durations import DAY_MS
from service.core.events import parse_ts, validate_event
from service.core.profile import BUILTIN_PROFILES, Profile, load_profile
from service.dev.generator import CHANNELS, generate, generate_live

T0 = 1_700_000_000_000


@cache
def history(profile: str, users: int = 3000, days: float = 120, seed: int = 1) -> tuple[dict[str, Any], ...]:
    return tuple(generate(users=users, start_ms=T0, days=days, seed=seed, profile=load_profile(profile)))


def by_user(events: tuple[dict[str, Any], ...]) -> dict[str, list[dict[str, Any]]]:
    users: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        users[ev["user_id"]].append(ev)
    return users


def active_ts(events: list[dict[str, Any]], profile: Profile) -> list[int]:
    return [e["ts"] for e in events if profile.is_activity(e["type"])]


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_every_event_is_canonical_sorted_unique_and_inside_the_period(name: str) -> None:
    events = history(name)
    assert len(events) > 3000 * 5
    for ev in events:
        assert not isinstance(validate_event(ev), str), (validate_event(ev), ev)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert ts[0] >= T0 and ts[-1] <= T0 + 120 * DAY_MS
    assert len({e["event_id"] for e in events}) == len(events)


@settings(max_examples=25, deadline=None)
@given(
    users=st.integers(0, 60),
    days=st.floats(0.01, 400),
    seed=st.integers(0, 2**32),
    name=st.sampled_from([*BUILTIN_PROFILES, None]),
)
def test_any_arguments_give_valid_sorted_unique_events(
    users: int, days: float, seed: int, name: str | None
) -> None:
    profile = load_profile(name) if name else None
    events = list(generate(users=users, start_ms=T0, days=days, seed=seed, profile=profile))
    assert all(not isinstance(validate_event(e), str) for e in events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert len({e["user_id"] for e in events}) == users  # every user arrives inside the period


def test_the_same_seed_gives_the_same_events_and_another_seed_other_ids() -> None:
    again = tuple(generate(users=3000, start_ms=T0, days=120, seed=1, profile=load_profile("daily_app")))
    assert again == history("daily_app")
    other = list(generate(users=3000, start_ms=T0, days=120, seed=2, profile=load_profile("daily_app")))
    assert other != list(again)
    assert not {e["event_id"] for e in other} & {e["event_id"] for e in again}  # two seeds can share a topic


def test_users_arrive_over_the_whole_period_through_their_first_event_channel() -> None:
    users = by_user(history("daily_app"))
    firsts = sorted(evs[0]["ts"] for evs in users.values())
    quarters = Counter((ts - T0) * 4 // (120 * DAY_MS) for ts in firsts)
    assert all(600 <= quarters[q] <= 900 for q in range(4)), quarters
    assert all("channel" in evs[0] for evs in users.values())
    assert {evs[0]["channel"] for evs in users.values()} == {c.name for c in CHANNELS}


def test_sessions_have_several_events_and_a_minority_of_heavy_users_makes_much_of_the_traffic() -> None:
    events = history("daily_app")
    counts = sorted((len(v) for v in by_user(events).values()), reverse=True)
    assert 8 <= len(events) / len(counts) <= 40
    assert sum(counts[: len(counts) // 10]) > 0.4 * len(events)  # top 10% of users
    per_session_start = len(events) / sum(1 for e in events if e["type"] == "visit")
    assert per_session_start >= 2


def test_channels_convert_from_register_to_order_clearly_differently() -> None:
    registered: dict[str, set[str]] = defaultdict(set)
    ordered: dict[str, set[str]] = defaultdict(set)
    channel: dict[str, str] = {}
    for ev in history("fintech", users=6000):
        uid = ev["user_id"]
        channel.setdefault(uid, ev.get("channel", "?"))
        if ev["type"] == "register":
            registered[channel[uid]].add(uid)
        elif ev["type"] == "order" and uid in registered[channel[uid]]:
            ordered[channel[uid]].add(uid)
    rate = {c: len(ordered[c]) / len(registered[c]) for c in registered}
    assert len(rate) == len(CHANNELS)
    assert rate["referral"] > 2.5 * rate["ads"], rate
    assert rate["organic"] > rate["social"] > rate["ads"], rate
    assert len({round(r, 2) for r in rate.values()}) == len(rate)


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_most_users_go_quiet_and_some_come_back_after_long_gaps(name: str) -> None:
    profile = load_profile(name)
    th = profile.thresholds
    days = th.dead_after * 1.6 / DAY_MS
    events = history(name, users=2000, days=days)
    end = T0 + int(days * DAY_MS)
    returns: Counter[str] = Counter()
    quiet = 0
    for evs in by_user(events).values():
        ts = active_ts(evs, profile)
        quiet += end - ts[-1] >= th.silent_after
        for a, b in pairwise(ts):
            gap = b - a
            if gap >= th.dead_after:
                returns["dead"] += 1
            elif gap >= th.churn_after:
                returns["churned"] += 1
            elif gap >= th.silent_after:
                returns["silent"] += 1
    assert quiet > 0.6 * 2000
    assert returns["silent"] > 100 and returns["churned"] > 20 and returns["dead"] > 0, returns


def test_recall_messages_go_to_lapsed_users_and_some_clicks_bring_them_back() -> None:
    events = history("fintech")
    recalls = [
        e for e in events if e["type"].startswith("message_") and e["properties"]["campaign"] == "recall"
    ]
    delivered = [e for e in recalls if e["type"] == "message_delivered"]
    clicked = [e for e in recalls if e["type"] == "message_click"]
    assert delivered and 0 < len(clicked) < len(delivered)
    assert {e["properties"]["trigger_id"] for e in clicked} <= {
        e["properties"]["trigger_id"] for e in delivered
    }
    users = by_user(events)
    came_back = 0
    for click in clicked:
        later = [e for e in users[click["user_id"]] if e["ts"] > click["ts"] and e["type"] == "visit"]
        came_back += bool(later) and later[0]["ts"] - click["ts"] <= 3_600_000
    assert came_back > 0.8 * len(clicked)


def test_insurance_orders_are_policies_and_some_are_renewed_before_they_end() -> None:
    events = history("insurance")
    policies: dict[str, tuple[str, int]] = {}  # policy_id -> (user, policy_end)
    renewed = 0
    for ev in events:
        if ev["type"] not in ("order", "renew"):
            continue
        props = ev["properties"]
        end = parse_ts(props["policy_end"])
        assert isinstance(end, int) and end > ev["ts"] and ev["amount"] > 0
        if ev["type"] == "renew":
            user, previous_end = policies[props["policy_id"]]
            assert user == ev["user_id"] and ev["ts"] <= previous_end < end
            renewed += 1
        else:
            assert props["policy_id"] not in policies
        policies[props["policy_id"]] = (ev["user_id"], end)
    assert renewed > 50
    assert {type(e["properties"]["policy_end"]) for e in events if e["type"] == "order"} == {int, str}
    reminders = [
        e for e in events if e["type"] == "message_delivered" and e["properties"]["campaign"] == "renewal"
    ]
    assert reminders


def test_orders_carry_amounts_and_non_insurance_orders_no_policy() -> None:
    orders = [e for e in history("daily_app") if e["type"] == "order"]
    assert orders and all(e["amount"] > 0 and "properties" not in e for e in orders)
    assert not [e for e in history("daily_app") if e["type"] == "renew"]


def test_a_million_users_stream_without_precomputing_the_history() -> None:
    started = time.perf_counter()
    first = list(islice(generate(users=1_000_000, start_ms=T0, days=30, seed=5), 20_000))
    assert time.perf_counter() - started < 10
    assert [e["ts"] for e in first] == sorted(e["ts"] for e in first)


def test_generation_is_fast() -> None:
    started = time.perf_counter()
    n = sum(1 for _ in generate(users=5000, start_ms=T0, days=90, seed=9, profile=load_profile("daily_app")))
    rate = n / (time.perf_counter() - started)
    assert rate > 50_000, (
        f"{rate:,.0f} events/s"
    )  # about 300-500k/s on the dev machine; a floor for regressions


def test_live_batches_follow_the_clock_at_the_requested_rate() -> None:
    clock = [T0]

    def now() -> int:
        clock[0] += 1000
        return clock[0]

    live = generate_live(users=500, seed=3, rate_per_s=200, now_ms_fn=now, pace=False)
    batches = list(islice(live, 30))
    events = [e for b in batches for e in b]
    assert 30 * 200 <= len(events) <= 30 * 200 + 30 * 20
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(not isinstance(validate_event(e), str) for e in events)
    for i, batch in enumerate(batches):
        tick_end = T0 + 1000 * (i + 1)
        assert all(tick_end - 1000 <= e["ts"] <= tick_end for e in batch)
        assert [e["ts"] for e in batch] == sorted(e["ts"] for e in batch)
    per_user = by_user(tuple(events))
    assert all([e["ts"] for e in evs] == sorted(e["ts"] for e in evs) for evs in per_user.values())
    assert {"visit", "register", "order"} <= {e["type"] for e in events}
    restarted = next(
        generate_live(users=500, seed=3, rate_per_s=200, now_ms_fn=lambda: T0 + 99_000, pace=False)
    )
    assert not {e["event_id"] for e in restarted} & {e["event_id"] for e in events}
