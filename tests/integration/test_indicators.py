"""Process indicators from the API and population metrics at scrape time, exact against the history."""

from __future__ import annotations

import re
from datetime import date, timedelta

import httpx
import pytest

from service.api import create_api
from service.core.durations import DAY_MS
from tests import reference as ref
from tests.stack import Stack, history

pytestmark = pytest.mark.integration


def _iso(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def _day(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


WINDOWS = {"dau": DAY_MS, "wau": 7 * DAY_MS, "mau": 30 * DAY_MS}


def expected(users: dict[str, ref.RefUser], now: int, channel: str | None) -> dict[str, object]:
    members = [u for u in users.values() if channel is None or (u.channel or "-") == channel]
    n = len(members)
    registered = sum(1 for u in members if u.counts["register"])
    payers = sum(1 for u in members if u.orders)
    orders = sum(u.orders for u in members)
    gmv = sum(u.revenue for u in members)
    active = {w: sum(1 for u in members if u.last_active > now - d) for w, d in WINDOWS.items()}
    return {
        "users": n,
        "active": active,
        "registrations": registered,
        "payers": payers,
        "payment_rate": payers / registered if registered else None,
        "orders": orders,
        "gmv": round(gmv, 2),
        "aov": round(gmv, 2) / orders if orders else None,
    }


async def test_indicators_and_population_metrics_match_the_history(stack: Stack) -> None:
    s = stack.settings
    events = history(users=600)
    stack.publish(events)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
    finally:
        worker.stop()
    profile = s.loaded_profile
    users = ref.reference(events, profile)
    now = max(e["ts"] for e in events)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(create_api(s)), base_url="http://api") as api:
        body = (await api.get("/indicators")).json()
        assert body["as_of"] == now
        channels = sorted({u.channel or "-" for u in users.values()})
        assert [b["channel"] for b in body["by_channel"]] == channels
        for channel, block in [(None, body), *((b["channel"], b) for b in body["by_channel"])]:
            want = expected(users, now, channel)
            got = {k: block[k] for k in want}
            assert got["gmv"] == pytest.approx(want.pop("gmv"))
            assert got.pop("gmv") is not None
            if want["aov"] is not None:
                assert got["aov"] == pytest.approx(want.pop("aov"))
                got.pop("aov")
            assert got == want, channel
            if channel:
                single = (await api.get("/indicators", params={"channel": channel})).json()
                assert single["users"] == want["users"] and single["active"] == want["active"]
        assert body["lifecycle"] == ref.lifecycle_counts(users, now, profile)

        first_day = min(e["ts"] for e in events) // DAY_MS
        last_day = now // DAY_MS
        for channel in (None, *channels):
            sizes, retained = ref.retention(events, profile, channel)
            params = {
                "from": _iso(first_day),
                "to": _iso(last_day),
                **({"channel": channel} if channel else {}),
            }
            body = (await api.get("/retention", params=params)).json()
            assert body["after_days"] == [1, 7, 30]
            for cohort in body["cohorts"]:
                day = _day(cohort["cohort"])
                assert cohort["users"] == sizes[day], (channel, cohort)
                for n, got in cohort["retained"].items():
                    assert got["users"] == retained[(day, int(n))], (channel, cohort["cohort"], n)
            assert sum(c["users"] for c in body["cohorts"]) == sum(sizes.values())
            assert sum(retained.values()) > 0
        one = (await api.get("/retention", params={"cohort": _iso(first_day)})).json()
        assert [c["cohort"] for c in one["cohorts"]] == [_iso(first_day)]
        assert (await api.get("/retention")).status_code == 422
        assert (await api.get("/retention", params={"cohort": "2024-13-01"})).status_code == 422

        text = (await api.get("/metrics")).text
        for channel in channels:
            counts = ref.lifecycle_counts(users, now, profile, channel)
            for state, n in counts.items():
                line = rf'lifecycle_users\{{channel="{re.escape(channel)}",state="{state}"\}} {n}\.0'
                assert re.search(line, text), (channel, state, n)
            funnel = ref.funnel_users(users, profile, channel)
            for stage, n in zip(profile.funnel, funnel, strict=True):
                line = (
                    rf'lifecycle_funnel_users\{{channel="{re.escape(channel)}",stage="{stage.name}"\}} {n}\.0'
                )
                assert re.search(line, text), (channel, stage.name, n)
