"""A direct, independent computation of what the service must report for an event history.

Written the obvious way (sort, loop, dictionaries), sharing nothing with the worker but
the definition of a stage (`state_at`, restated), so integration tests
can compare the service's numbers with it exactly. Days are the profile's local days,
worked out here with `zoneinfo` directly rather than with `service.core.calendar`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.core.events import Event, validate_event
from service.core.funnel_rules import NamedFunnel, Order
from service.core.lifecycle import Thresholds, state_at
from service.core.partitioning import partition_for
from service.core.profile import Profile


@dataclass
class RefUser:
    first_seen: int
    last_active: int
    channel: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    revenue: float = 0.0
    times: dict[str, list[int]] = field(default_factory=dict)  # every applied event's time, by type


_EPOCH = date(1970, 1, 1)


def local_date(ts: int, profile: Profile) -> date:
    """The date of `ts` (epoch ms) on a wall calendar in the profile's time zone."""
    return datetime.fromtimestamp(ts / 1000, UTC).astimezone(ZoneInfo(profile.calendar.name)).date()


def local_day(ts: int, profile: Profile) -> int:
    """That date as days since 1970-01-01: the numbers cohort counters and `/retention` use."""
    return (local_date(ts, profile) - _EPOCH).days


def local_month(ts: int, profile: Profile) -> str:
    """`YYYY-MM` of that date: the months of high-value users."""
    return local_date(ts, profile).strftime("%Y-%m")


def distinct_events(events: list[dict[str, Any]]) -> Iterator[Event]:
    """The valid events, each event id once (its first occurrence), in order."""
    seen: set[str] = set()
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        yield ev


def reference(events: list[dict[str, Any]], profile: Profile) -> dict[str, RefUser]:
    """Users after applying every distinct valid event (first occurrence of each event_id)."""
    users: dict[str, RefUser] = {}
    for ev in distinct_events(events):
        if ev.type == "channel_cost":  # a channel's acquisition cost, not a user's event
            continue
        user = users.get(ev.user_id)
        if user is None:
            if not profile.is_activity(ev.type):
                continue
            user = users[ev.user_id] = RefUser(ev.ts, ev.ts)
        user.first_seen = min(user.first_seen, ev.ts)
        if profile.is_activity(ev.type):
            user.last_active = max(user.last_active, ev.ts)
        if user.channel is None and ev.channel:
            user.channel = ev.channel
        user.counts[ev.type] += 1
        user.times.setdefault(ev.type, []).append(ev.ts)
        if ev.type in profile.revenue_types:
            user.orders += 1
            user.revenue += ev.amount or 0.0
    return users


def stage_of(user: RefUser, profile: Profile) -> int:
    reached = -1
    for i, stage in enumerate(profile.funnel):
        if user.counts[stage.event] >= stage.nth:
            reached = i
    return reached


def funnel_position(user: RefUser, funnel: NamedFunnel) -> tuple[int, int] | None:
    """(index of the user's step, entry time) in a named funnel, or None: the definitions of
    docs/api.md#named-funnels, walking the user's events in time order."""
    history = sorted((ts, etype) for etype, times in user.times.items() for ts in times)
    seen: Counter[str] = Counter()
    reached: dict[int, int] = {}  # step index -> when its nth event happened
    for ts, etype in history:
        seen[etype] += 1
        for k, step in enumerate(funnel.steps):
            if step.event == etype and seen[etype] == step.nth:
                reached[k] = ts
    if not reached:
        return None
    if funnel.order is Order.STRICT:
        if 0 not in reached:
            return None
        entry, at = reached[0], 0
        for k in range(1, len(funnel.steps)):
            if k not in reached or reached[k] < reached[k - 1]:
                break
            if funnel.window is not None and reached[k] - entry > funnel.window:
                break
            at = k
        return at, entry
    entry = min(reached.values())
    within = [k for k, ts in reached.items() if funnel.window is None or ts - entry <= funnel.window]
    return max(within), entry


def entry_week(ts: int, profile: Profile) -> int:
    """The day number of the Monday of the week `ts` falls in, in the profile's time zone."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    day = datetime.fromtimestamp(ts / 1000, ZoneInfo(profile.calendar.name)).date()
    return (day - timedelta(days=day.weekday()) - date(1970, 1, 1)).days


def named_funnel_users(
    users: dict[str, RefUser],
    profile: Profile,
    name: str,
    channel: str | None = None,
    week: int | None = None,
) -> list[int]:
    """Users at each step of the named funnel or further, of a channel and entry week or all."""
    funnel = next(f for f in profile.funnels if f.name == name)
    out = [0] * len(funnel.steps)
    for user in users.values():
        found = funnel_position(user, funnel)
        if found is None or (channel is not None and (user.channel or "-") != channel):
            continue
        if week is not None and entry_week(found[1], profile) != week:
            continue
        for k in range(found[0] + 1):
            out[k] += 1
    return out


def lifecycle_counts(
    users: dict[str, RefUser], now: int, profile: Profile, channel: str | None = None
) -> dict[str, int]:
    counts = dict.fromkeys(("new", "retained", "silent", "churned", "dead"), 0)
    for user in users.values():
        if channel is None or (user.channel or "-") == channel:
            counts[state_at(user.first_seen, user.last_active, now, profile.thresholds).value] += 1
    return counts


def active_users(
    users: dict[str, RefUser], now: int, profile: Profile, channel: str | None = None
) -> dict[str, int]:
    """DAU / WAU / MAU: users whose last activity falls on the clock's local day, or on one of
    the 7 or 30 local days ending with it (or later: an event ahead of the clock)."""
    today = local_day(now, profile)
    out = {}
    for name, days in (("dau", 1), ("wau", 7), ("mau", 30)):
        out[name] = sum(
            1
            for u in users.values()
            if (channel is None or (u.channel or "-") == channel)
            and local_day(u.last_active, profile) > today - days
        )
    return out


def funnel_users(users: dict[str, RefUser], profile: Profile, channel: str | None = None) -> list[int]:
    out = [0] * len(profile.funnel)
    for user in users.values():
        if channel is None or (user.channel or "-") == channel:
            for k in range(stage_of(user, profile) + 1):
                out[k] += 1
    return out


def _walk(out: Counter[str], th: Thresholds, first: int, last: int, start: int, end: int) -> None:
    """Count the stage changes of a user with these first and last activities in (start, end]:
    the stage can only change where a threshold is crossed, so it is evaluated there only."""
    points = sorted(
        p
        for p in (first + th.new_window, last + th.silent_after, last + th.churn_after, last + th.dead_after)
        if start < p <= end
    )
    state = state_at(first, last, start, th)
    for p in points:
        nxt = state_at(first, last, p, th)
        if nxt != state:
            out[f"tr|{state.value}|{nxt.value}"] += 1
            state = nxt


def transitions(
    events: list[dict[str, Any]], profile: Profile, until: int | Callable[[str], int]
) -> Counter[str]:
    """Every stage change of every user from their first event to `until`, as `tr|from|to`.

    `until` may be a function of the user id: in event-clock mode each partition's
    clock is its own latest event time.

    Walks each user's distinct valid events in time order; between two moments the
    stage can only change where an idle or new-window threshold is crossed, so the
    stage is evaluated at exactly those instants.
    """
    th = profile.thresholds
    per_user: dict[str, list[Any]] = {}
    for ev in distinct_events(events):
        per_user.setdefault(ev.user_id, []).append(ev)
    out: Counter[str] = Counter()

    def walk(first: int, last: int, start: int, end: int) -> None:
        _walk(out, th, first, last, start, end)

    for uid, evs in per_user.items():
        evs.sort(key=lambda e: e.ts)
        active = [e for e in evs if profile.is_activity(e.type)]
        if not active:
            continue
        first = last = clock = active[0].ts
        out[f"tr|-|{state_at(first, last, first, th).value}"] += 1
        for ev in active[1:]:
            walk(first, last, clock, ev.ts)
            before = state_at(first, last, ev.ts, th)
            last = max(last, ev.ts)
            after = state_at(first, last, ev.ts, th)
            if after != before:
                out[f"tr|{before.value}|{after.value}"] += 1
            clock = ev.ts
        walk(first, last, clock, until(uid) if callable(until) else until)
    return out


def partition_clocks(events: list[dict[str, Any]], partitions: int) -> Callable[[str], int]:
    """The event clock of each user's partition: the latest event time in it."""
    marks: dict[int, int] = {}
    for raw in events:
        ev = validate_event(raw)
        if not isinstance(ev, str):
            p = partition_for(ev.user_id, partitions)
            marks[p] = max(marks.get(p, ev.ts), ev.ts)
    return lambda uid: marks[partition_for(uid, partitions)]


def return_gaps(events: list[dict[str, Any]], profile: Profile) -> Counter[tuple[str, int]]:
    """Returns per (channel at the time, gap bucket): activity at least an hour after the previous."""
    from service.core.gaps import gap_bucket

    seen: set[str] = set()
    last: dict[str, int] = {}
    channel: dict[str, str] = {}
    out: Counter[tuple[str, int]] = Counter()
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        if ev.user_id not in last:
            if not profile.is_activity(ev.type):
                continue
            last[ev.user_id] = ev.ts
            channel[ev.user_id] = ev.channel or "-"
            continue
        if channel[ev.user_id] == "-" and ev.channel:
            channel[ev.user_id] = ev.channel
        if profile.is_activity(ev.type) and ev.ts > last[ev.user_id]:
            bucket = gap_bucket(ev.ts - last[ev.user_id])
            if bucket is not None:
                out[(channel[ev.user_id], bucket)] += 1
            last[ev.user_id] = ev.ts
    return out


def retention(
    events: list[dict[str, Any]], profile: Profile, channel: str | None = None
) -> tuple[Counter[int], Counter[tuple[int, int]]]:
    """Cohort sizes per first-seen local day, and users active again on local day d+N (N in
    retention_days)."""
    users = reference(events, profile)
    seen: set[str] = set()
    sizes: Counter[int] = Counter()
    back: set[tuple[str, int]] = set()
    for user in users.values():
        if channel is None or (user.channel or "-") == channel:
            sizes[local_day(user.first_seen, profile)] += 1
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen or ev.user_id not in users:
            continue
        seen.add(ev.event_id)
        user = users[ev.user_id]
        if profile.is_activity(ev.type) and (channel is None or (user.channel or "-") == channel):
            after = local_day(ev.ts, profile) - local_day(user.first_seen, profile)
            if after in profile.retention_days:
                back.add((ev.user_id, after))
    retained: Counter[tuple[int, int]] = Counter()
    for uid, after in back:
        retained[(local_day(users[uid].first_seen, profile), after)] += 1
    return sizes, retained


def conversions(events: list[dict[str, Any]], profile: Profile) -> Counter[tuple[int, int]]:
    """Users reaching each funnel stage, by the gap bucket of the time since first seen (-1: < 1 h)."""
    from service.core.gaps import gap_bucket

    users = reference(events, profile)
    seen: set[str] = set()
    counts: dict[str, Counter[str]] = {u: Counter() for u in users}
    stage: dict[str, int] = dict.fromkeys(users, -1)
    out: Counter[tuple[int, int]] = Counter()
    for raw in events:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen or ev.user_id not in users or ev.type == "channel_cost":
            continue
        seen.add(ev.event_id)
        if ev.ts < users[ev.user_id].first_seen:
            continue
        counts[ev.user_id][ev.type] += 1
        reached = max(
            (i for i, s in enumerate(profile.funnel) if counts[ev.user_id][s.event] >= s.nth), default=-1
        )
        for k in range(stage[ev.user_id] + 1, reached + 1):
            bucket = gap_bucket(ev.ts - users[ev.user_id].first_seen)
            out[(k, -1 if bucket is None else bucket)] += 1
        stage[ev.user_id] = max(stage[ev.user_id], reached)
    return out


def transitions_as_delivered(
    deliveries: list[tuple[dict[str, Any], int]], profile: Profile, until: Callable[[str], int]
) -> Counter[str]:
    """Stage changes for events in delivery order, each with the clock its partition had already
    counted to when it arrived (0 for an event on time): the service's rule for late events.

    Time-driven changes are final once counted: a late event (older than that clock) still
    moves `first_seen`/`last_active`, but the change it makes is counted at the clock, not at
    its own time, and nothing already counted is taken back. For events in time order this is
    `transitions`.
    """
    th = profile.thresholds
    seen: set[str] = set()
    users: dict[str, list[int]] = {}  # user -> [first_seen, last_active, counted until]
    out: Counter[str] = Counter()

    def walk(first: int, last: int, start: int, end: int) -> None:
        _walk(out, th, first, last, start, end)

    for raw, clock in deliveries:
        ev = validate_event(raw)
        if isinstance(ev, str) or ev.event_id in seen or ev.type == "channel_cost":
            continue
        seen.add(ev.event_id)
        active = profile.is_activity(ev.type)
        user = users.get(ev.user_id)
        if user is None:
            if active:
                tau = max(ev.ts, clock)
                users[ev.user_id] = [ev.ts, ev.ts, tau]
                out[f"tr|-|{state_at(ev.ts, ev.ts, tau, th).value}"] += 1
            continue
        first, last, counted = user
        tau = max(ev.ts, counted, clock)
        walk(first, last, counted, tau)
        before = state_at(first, last, tau, th)
        first = min(first, ev.ts)
        last = max(last, ev.ts) if active else last
        after = state_at(first, last, tau, th)
        if after != before:
            out[f"tr|{before.value}|{after.value}"] += 1
        users[ev.user_id] = [first, last, tau]
    for uid, (first, last, counted) in users.items():
        walk(first, last, counted, until(uid))
    return out


def audience(
    users: dict[str, RefUser], now: int, profile: Profile, filters: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The users an audience filter selects at `now`, with the row the API gives for each,
    computed from the definitions (docs/audiences.md), not from any index."""
    th = profile.thresholds
    names = [s.name for s in profile.funnel]
    segments = {
        (True, True, True): "important_value",
        (True, False, True): "important_develop",
        (False, True, True): "important_retain",
        (False, False, True): "important_recall",
        (True, True, False): "general_value",
        (True, False, False): "general_develop",
        (False, True, False): "general_retain",
        (False, False, False): "general_recall",
    }

    def ago(value: str) -> int:
        from service.core.durations import DurationError, parse_duration

        try:
            return now - parse_duration(value)
        except DurationError:
            pass
        if len(value) == 10:  # a day: its local midnight (with fold=0, the first instant it has)
            day = datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(profile.calendar.name))
            return int(day.timestamp() * 1000)
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)

    out: dict[str, dict[str, Any]] = {}
    for uid, u in users.items():
        state = state_at(u.first_seen, u.last_active, now, th).value
        entered = {
            "dead": u.last_active + th.dead_after,
            "churned": u.last_active + th.churn_after,
            "silent": u.last_active + th.silent_after,
            "new": u.first_seen,
            "retained": u.first_seen + th.new_window,
        }[state]
        stage = stage_of(u, profile)
        recent = now - u.last_active < profile.rfm.recency
        segment = segments[(recent, u.orders >= profile.rfm.frequency, u.revenue >= profile.rfm.monetary)]
        states = filters.get("state")
        if states and state not in states:
            continue
        if "channel" in filters and (u.channel or "-") != filters["channel"]:
            continue
        if "stage" in filters and stage < names.index(filters["stage"]):
            continue
        if "not_stage" in filters and stage >= names.index(filters["not_stage"]):
            continue
        if "segment" in filters and segment != filters["segment"]:
            continue
        if "entered_since" in filters and entered < ago(filters["entered_since"]):
            continue
        if "entered_before" in filters and entered >= ago(filters["entered_before"]):
            continue
        out[uid] = {
            "user_id": uid,
            "state": state,
            "channel": u.channel,
            "stage": names[stage] if stage >= 0 else None,
            "segment": segment,
            "last_active": _iso(u.last_active),
            "entered_at": _iso(entered),
        }
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def without_erased(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events that survive the erase and restore control messages in `history`.

    Duplicates go first (an event id counts once, wherever it comes); then, in order, an
    erase drops every earlier event of its user and every later one until a restore.
    """
    seen: set[str] = set()
    kept: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    blocked: set[str] = set()
    for i, item in enumerate(history):
        uid = item["user_id"]
        if "control" in item:
            if item["control"] == "erase":
                kept[uid] = []
                blocked.add(uid)
            else:
                blocked.discard(uid)
            continue
        if item["event_id"] in seen:
            continue
        seen.add(item["event_id"])
        if uid not in blocked:
            kept.setdefault(uid, []).append((i, item))
    return [item for _, item in sorted(pair for events in kept.values() for pair in events)]


def interval_lifecycle(
    events: list[dict[str, Any]], profile: Profile, interval: str, channel: str | None = None
) -> Counter[tuple[str, str]]:
    """Users per (interval start, kind), PostHog's definitions, over each user's whole history.

    A user is active in an interval (a local day, a week from Monday, a calendar month of the
    profile's time zone) when one of its activity events falls in it; then per interval:
    new (the first active one), returning (active in it and the one before), resurrecting
    (active in it, not the one before, active earlier) and dormant (active in the one
    before, not in it) — the one after the last active interval included.
    """
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(profile.calendar.name)

    def start_of(ts: int) -> date:
        return start_of_day(datetime.fromtimestamp(ts / 1000, UTC).astimezone(zone).date())

    def following(start: date) -> date:
        if interval == "week":
            return start + timedelta(days=7)
        if interval == "month":
            return (start + timedelta(days=31)).replace(day=1)
        return start + timedelta(days=1)

    def previous(start: date) -> date:
        return start_of_day(start - timedelta(days=1))

    def start_of_day(day: date) -> date:
        if interval == "week":
            return day - timedelta(days=day.weekday())
        if interval == "month":
            return day.replace(day=1)
        return day

    users = reference(events, profile)
    active: dict[str, set[date]] = {}
    for ev in distinct_events(events):
        if ev.user_id in users and ev.type != "channel_cost" and profile.is_activity(ev.type):
            active.setdefault(ev.user_id, set()).add(start_of(ev.ts))
    out: Counter[tuple[str, str]] = Counter()
    for uid, starts in active.items():
        if channel is not None and (users[uid].channel or "-") != channel:
            continue
        first = min(starts)
        current = first
        last = max(starts)
        while current <= following(last):
            before = current != first and previous(current) in starts
            if current in starts:
                kind = "new" if current == first else "returning" if before else "resurrecting"
                out[(current.isoformat(), kind)] += 1
            elif before:
                out[(current.isoformat(), "dormant")] += 1
            current = following(current)
    return out
