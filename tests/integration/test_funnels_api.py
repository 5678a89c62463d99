"""Named funnels end to end: a real worker applies a history whose second part arrives
late, and `/funnels`, `/funnels/{name}` (per channel, per weekly cohort) and the
population metrics equal `tests/reference.py`."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.api.app import create_api
from service.core.calendar import Calendar
from service.core.profile import load_profile
from service.dev.generator import generate
from tests import reference as ref
from tests.stack import T0, make_stack

pytestmark = pytest.mark.integration

PROFILE = {
    "name": "funnel_shop",
    "lifecycle": {"new_window": "3d", "silent_after": "3d", "churn_after": "14d", "dead_after": "60d"},
    "time_zone": "Asia/Shanghai",
    "funnel": [
        {"name": "visit", "event": "visit"},
        {"name": "register", "event": "register"},
        {"name": "verify", "event": "verify"},
        {"name": "first_order", "event": "order"},
        {"name": "repurchase", "event": "order", "nth": 2},
    ],
    "funnels": {
        "signup": {"order": "strict", "steps": ["visit", "register", "verify"]},
        "first_order_7d": {"order": "strict", "window": "7d", "steps": ["register", "order"]},
        "buyer_2d": {
            "order": "any",
            "window": "2d",
            "steps": ["verify", "order", {"name": "repurchase", "event": "order", "nth": 2}],
        },
    },
}


def _steps(body: dict[str, Any]) -> list[int]:
    return [s["users"] for s in body["steps"]]


async def test_named_funnels_equal_the_reference(broker: Any, redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "funnel_shop.yaml"
    path.write_text(yaml.safe_dump(PROFILE, sort_keys=False))
    stack = make_stack(broker, redis_url, tmp_path, LIFECYCLE_PROFILE=str(path))
    profile = load_profile(str(path))
    events = list(generate(users=250, start_ms=T0, days=40, seed=11, profile=profile))
    rnd = random.Random(3)
    late = [e for e in events if e["type"] in ("register", "verify", "order") and rnd.random() < 0.3]
    held = {e["event_id"] for e in late}
    on_time = [e for e in events if e["event_id"] not in held]
    worker = stack.worker()
    try:
        stack.publish(on_time)
        stack.wait_applied(worker)
        stack.publish(late)  # steps arriving after later events of their users: earlier times
        stack.wait_applied(worker)
    finally:
        worker.stop()
    users = ref.reference(on_time + late, profile)
    channels = sorted({u.channel or "-" for u in users.values()})
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        listed = (await api.get("/funnels")).json()["funnels"]
        assert [f["name"] for f in listed] == ["core", "signup", "first_order_7d", "buyer_2d"]
        core = (await api.get("/funnel")).json()
        assert [s["users"] for s in listed[0]["steps"]] == [s["users"] for s in core["stages"]]
        assert listed[2]["order"] == "strict" and listed[2]["window"] == "1w"
        for funnel in profile.funnels:
            want = ref.named_funnel_users(users, profile, funnel.name)
            assert want[0] > want[-1] > 0, funnel.name  # the history reaches every step, not everyone
            summary = next(f for f in listed if f["name"] == funnel.name)
            assert (summary["entered"], summary["completed"]) == (want[0], want[-1])
            body = (await api.get(f"/funnels/{funnel.name}")).json()
            assert _steps(body) == want
            assert body["steps"][1]["conversion_from_previous"] == pytest.approx(want[1] / want[0])
            for ch in channels:
                got = (await api.get(f"/funnels/{funnel.name}", params={"channel": ch})).json()
                assert _steps(got) == ref.named_funnel_users(users, profile, funnel.name, ch), ch
            weekly = (await api.get(f"/funnels/{funnel.name}", params={"cohort": "week"})).json()
            weeks = {
                ref.entry_week(p[1], profile) for u in users.values() if (p := ref.funnel_position(u, funnel))
            }
            assert [c["week"] for c in weekly["cohorts"]] == [Calendar.iso(w) for w in sorted(weeks)]
            for cohort in weekly["cohorts"]:
                week = Calendar.from_iso(cohort["week"])
                assert _steps(cohort) == ref.named_funnel_users(users, profile, funnel.name, week=week)
            by_channel = (
                await api.get(f"/funnels/{funnel.name}", params={"cohort": "week", "channel": channels[0]})
            ).json()
            for cohort in by_channel["cohorts"]:
                week = Calendar.from_iso(cohort["week"])
                want_ch = ref.named_funnel_users(users, profile, funnel.name, channels[0], week)
                assert _steps(cohort) == want_ch

        for uid in sorted(users)[:40]:  # each user's own step and entry
            got = (await api.get(f"/users/{uid}")).json()["funnels"]
            want_user = {}
            for funnel in profile.funnels:
                if (found := ref.funnel_position(users[uid], funnel)) is not None:
                    step = funnel.steps[found[0]].name
                    want_user[funnel.name] = {"step": step, "step_index": found[0], "entered_at": found[1]}
            assert got == want_user, uid

        missing = await api.get("/funnels/nope")
        assert missing.status_code == 404
        assert (
            missing.json()["detail"]
            == "no funnel 'nope'; the profile's funnels: core, signup, first_order_7d, buyer_2d"
        )
        no_cohorts = await api.get("/funnels/core", params={"cohort": "week"})
        assert no_cohorts.status_code == 422 and "funnels:" in no_cohorts.json()["detail"]
        assert (await api.get("/funnels/signup", params={"cohort": "month"})).status_code == 422
        assert (await api.get("/funnels/Bad Name")).status_code == 422

        text = (await api.get("/metrics")).text
        now = max(e["ts"] for e in events)
        this_week = ref.entry_week(now, profile)
        for funnel in profile.funnels:
            for ch in channels:
                want = ref.named_funnel_users(users, profile, funnel.name, ch)
                for step, n in zip(funnel.steps, want, strict=True):
                    labels = f'channel="{re.escape(ch)}",funnel="{funnel.name}",step="{step.name}"'
                    assert re.search(rf"lifecycle_funnel_step_users\{{{labels}\}} {n}\.0", text), labels
            for ago in range(4):
                want = ref.named_funnel_users(users, profile, funnel.name, week=this_week - 7 * ago)
                for step, n in zip(funnel.steps, want, strict=True):
                    labels = f'funnel="{funnel.name}",step="{step.name}",weeks_ago="{ago}"'
                    assert re.search(rf"lifecycle_funnel_cohort_users\{{{labels}\}} {n}\.0", text), labels
