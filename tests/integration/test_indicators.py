"""Process indicators from the API and population metrics at scrape time, exact against the history."""

from __future__ import annotations

import re
from datetime import date, timedelta

import httpx
import pytest

from service.api.app import create_api
from service.core.profile import Profile
from service.core.segments import RFM_SEGMENTS
from tests import reference as ref
from tests.stack import Stack, history

pytestmark = pytest.mark.integration


def _crossing_month(events: list[dict[str, object]], uid: str, profile: Profile) -> str:
    total = 0.0
    for e in events:
        if e["user_id"] == uid and e["type"] in ("order", "renew") and e.get("amount"):
            total += float(e["amount"])  # type: ignore[arg-type]
            if total >= profile.rfm.monetary:
                return ref.local_month(int(e["ts"]), profile)  # type: ignore[call-overload]
    raise AssertionError(uid)


def _iso(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def _day(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


def expected(
    users: dict[str, ref.RefUser], now: int, channel: str | None, profile: Profile
) -> dict[str, object]:
    members = [u for u in users.values() if channel is None or (u.channel or "-") == channel]
    n = len(members)
    registered = sum(1 for u in members if u.counts["register"])
    payers = sum(1 for u in members if u.orders)
    orders = sum(u.orders for u in members)
    gmv = sum(u.revenue for u in members)
    active = ref.active_users(users, now, profile, channel)
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
    costs = [
        {
            "event_id": f"cost-{ch}",
            "user_id": f"cost:{ch}",
            "type": "channel_cost",
            "ts": events[0]["ts"],
            "channel": ch,
            "amount": amount,
        }
        for ch, amount in (("ads", 5000.0), ("social", 1200.0))
    ]
    events = costs + events
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
            want = expected(users, now, channel, profile)
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

        first_day = ref.local_day(min(e["ts"] for e in events), profile)
        last_day = ref.local_day(now, profile)
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

        # RFM segments, exact at the clock
        body = (await api.get("/indicators")).json()
        rfm = profile.rfm
        want_segments: dict[str, int] = {}
        for u in users.values():
            recent = 1 if now - u.last_active < rfm.recency else 0
            fm = (2 if u.orders >= rfm.frequency else 0) | (1 if u.revenue >= rfm.monetary else 0)
            name = RFM_SEGMENTS[(recent, fm)]
            want_segments[name] = want_segments.get(name, 0) + 1
        assert {k: v for k, v in body["rfm_segments"].items() if v} == want_segments
        some = next(iter(users))
        user = (await api.get(f"/users/{some}")).json()
        u = users[some]
        recent = 1 if now - u.last_active < rfm.recency else 0
        fm = (2 if u.orders >= rfm.frequency else 0) | (1 if u.revenue >= rfm.monetary else 0)
        assert user["rfm_segment"] == RFM_SEGMENTS[(recent, fm)]

        # time to convert, per stage and bucket
        conversions = ref.conversions(events, profile)
        for i, stage in enumerate(body["time_to_convert"]):
            assert stage["users"] == sum(n for (k, _), n in conversions.items() if k == i)
            got = [b["count"] for b in stage["buckets"]]
            assert got == [conversions[(i, b)] for b in range(-1, len(got) - 1)], stage["stage"]

        # channel quality: cost and CAC from channel_cost events, score in [0, 1]
        quality = {q["channel"]: q for q in body["channel_quality"]}
        for ch, amount in (("ads", 5000.0), ("social", 1200.0)):
            members = sum(1 for u in users.values() if (u.channel or "-") == ch)
            assert quality[ch]["cost"] == amount and quality[ch]["cac"] == pytest.approx(amount / members)
        assert all(0 <= q["score"] <= 1 for q in quality.values())
        assert quality["organic"]["cac"] is None

        # net new high-value users: gained when revenue crosses the monetary threshold
        gained: dict[str, int] = {}
        for uid, u in users.items():
            if u.revenue >= rfm.monetary:
                month = _crossing_month(events, uid, profile)
                gained[month] = gained.get(month, 0) + 1
        months = {m["month"]: m for m in body["high_value_by_month"]}
        assert {m: v["gained"] for m, v in months.items() if v["gained"]} == gained
        assert all(m["net_new"] == m["gained"] + m["recalled"] - m["lost"] for m in months.values())

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
