"""Indicators derived from counters: channel quality, time to convert, net new high-value users.

Pure functions of the summed counters (and the clock's local day), so the API and the tests
compute them the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from service.core import counters as ctr
from service.core.calendar import Calendar
from service.core.durations import format_duration
from service.core.gaps import BOUNDS_MS
from service.core.profile import Profile


def ratio(a: float, b: float) -> float | None:
    """a / b, or None where b is zero (a rate of nothing is unknown, not 0)."""
    return a / b if b else None


def retention_day(profile: Profile) -> int:
    """The day-N retention channel quality uses: 7 if configured, else the first configured N."""
    return 7 if 7 in profile.retention_days else profile.retention_days[0]


def channel_quality(
    totals: Mapping[str, float], cohorts: Mapping[str, int], today: int, profile: Profile
) -> dict[str, dict[str, Any]]:
    """Per channel, a rating of acquisition channels: new users, day-N retention, conversion to a first
    order, revenue per user, cost, CAC (cost per new user), LTV (revenue per user) / CAC, and a
    weighted score: each metric divided by its best channel's value, weighted by the profile."""
    n = retention_day(profile)
    cohort_users: dict[str, int] = defaultdict(int)
    retained: dict[str, int] = defaultdict(int)
    for name, value in cohorts.items():
        parts = ctr.split(name)
        if parts[0] == "cohort" and int(parts[2]) <= today - n:
            cohort_users[parts[1]] += value
        elif parts[0] == "ret" and int(parts[3]) == n:
            retained[parts[1]] += value
    channels = sorted(
        {ctr.split(k)[1] for k in totals if k.startswith(("users|", "cost|"))} | set(cohort_users)
    )
    out: dict[str, dict[str, Any]] = {}
    for ch in channels:
        users = int(totals.get(ctr.users(ch), 0))
        revenue = float(totals.get(ctr.revenue(ch), 0.0))
        cost = float(totals.get(ctr.cost(ch), 0.0))
        cac = ratio(cost, users) if cost else None
        ltv = ratio(revenue, users)
        out[ch] = {
            "new_users": users,
            "retention": ratio(retained[ch], cohort_users[ch]),
            "retention_day": n,
            "conversion": ratio(totals.get(ctr.payers(ch), 0), users),
            "revenue_per_user": ltv,
            "cost": round(cost, 2),
            "cac": cac,
            "ltv": ltv,
            "ltv_cac": ratio(ltv, cac) if ltv is not None and cac else None,
        }
    best = {m: max((q[m] or 0.0) for q in out.values()) if out else 0.0 for m, _ in profile.quality_weights}
    for q in out.values():
        q["score"] = round(
            sum(w * ((q[m] or 0.0) / best[m] if best[m] else 0.0) for m, w in profile.quality_weights), 4
        )
    return out


def time_to_convert(totals: Mapping[str, float], profile: Profile) -> list[dict[str, Any]]:
    """Per funnel stage: users who reached it, by time since first seen (log buckets from 1 h)."""
    counts: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for name, value in totals.items():
        if name.startswith("ttc|"):
            _, index, bucket = ctr.split(name)
            counts[int(index)][int(bucket)] += int(value)
    out = []
    for i, stage in enumerate(profile.funnel):
        per = counts.get(i, {})
        buckets = [{"from": "0", "count": per.get(-1, 0)}]
        buckets += [{"from": format_duration(b), "count": per.get(j, 0)} for j, b in enumerate(BOUNDS_MS)]
        out.append({"stage": stage.name, "users": sum(per.values()), "buckets": buckets})
    return out


def high_value_by_month(totals: Mapping[str, float]) -> list[dict[str, Any]]:
    """Monthly net new high-value users = gained + recalled - lost to churn."""
    months: dict[str, dict[str, int]] = defaultdict(lambda: {"gained": 0, "recalled": 0, "lost": 0})
    for name, value in totals.items():
        if name.startswith("hv|"):
            _, change, month = ctr.split(name)
            months[month][change] += int(value)
    return [
        {"month": m, **v, "net_new": v["gained"] + v["recalled"] - v["lost"]}
        for m, v in sorted(months.items())
    ]


# Active users: on the clock's local day, in the 7 and in the 30 local days ending with it.
ACTIVE_DAYS = {"dau": 1, "wau": 7, "mau": 30}


def clock_day(now_ms: int, calendar: Calendar) -> int:
    """The local day of the clock."""
    return calendar.day(now_ms)


def active_since(now_ms: int, days: int, calendar: Calendar) -> int:
    """When the `days` local days ending with the clock's day begin (epoch ms): a user is
    active in them when their `last_active` is at or after it. Days, not 24-hour spans:
    "today" in Shanghai starts at local midnight, and a DST change makes a day 23 or 25 hours."""
    return calendar.start_ms(calendar.day(now_ms) - days + 1)
