"""`GET /lifecycle/intervals` through the real worker, broker and Redis: exact against
`tests.reference.interval_lifecycle` in a non-UTC time zone, with late events; bad input is a 400."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.api.app import create_api
from service.core.calendar import Calendar
from service.core.profile import load_profile
from tests import reference as ref
from tests.stack import history, make_stack

pytestmark = pytest.mark.integration


def _profile_in(zone: str, workdir: Path) -> Path:
    """The daily_app profile with its days cut at midnight in `zone`."""
    source = Path(__file__).parents[2] / "service" / "profiles" / "daily_app.yaml"
    body = yaml.safe_load(source.read_text())
    body["time_zone"] = zone
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _late(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history with a fifth of its events held back and sent last, in random order: late by
    up to the whole history."""
    rng = random.Random(3)
    held = [e for e in events if rng.random() < 0.2]
    held_ids = {e["event_id"] for e in held}
    rng.shuffle(held)
    return [e for e in events if e["event_id"] not in held_ids] + held


async def test_intervals_equal_the_reference_with_late_events(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    stack = make_stack(
        broker, redis_url, tmp_path, LIFECYCLE_PROFILE=str(_profile_in("Asia/Shanghai", tmp_path))
    )
    profile = load_profile(stack.settings.profile)
    events = _late(history(users=300))
    stack.publish(events)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
    finally:
        worker.stop()
    cal = profile.calendar
    now = max(e["ts"] for e in events)
    first, today = cal.day(min(e["ts"] for e in events)), cal.day(now)
    users = ref.reference(events, profile)
    channels = sorted({u.channel or "-" for u in users.values()})
    current: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(stack.settings)), base_url="http://api"
    ) as api:
        for interval in ("day", "week", "month"):
            for channel in (None, *channels[:2]):
                params = {"interval": interval, "from": Calendar.iso(first), "to": Calendar.iso(today + 30)}
                if channel:
                    params["channel"] = channel
                response = await api.get("/lifecycle/intervals", params=params)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["time_zone"] == "Asia/Shanghai" and body["as_of"] == now
                want = ref.interval_lifecycle(events, profile, interval, channel)
                rows = body["intervals"]
                assert rows, interval
                assert Calendar.from_iso(rows[-1]["start"]) <= today  # none after the clock's interval
                for row in rows:
                    got = {kind: row[kind] for kind in ("new", "returning", "resurrecting", "dormant")}
                    assert got == {kind: want[(row["start"], kind)] for kind in got}, (interval, channel, row)
                members = [u for u in users.values() if channel is None or (u.channel or "-") == channel]
                assert sum(row["new"] for row in rows) == len(members)  # each user new once
                if channel is None:  # the history has every kind in every granularity
                    assert all(sum(row[k] for row in rows) for k in ("returning", "resurrecting", "dormant"))
                    current[interval] = rows[-1]
        metrics = (await api.get("/metrics")).text
        for interval, row in current.items():  # the gauges of the current interval
            for kind in ("new", "returning", "resurrecting", "dormant"):
                line = f'lifecycle_interval_users{{interval="{interval}",kind="{kind}"}} {float(row[kind])}'
                assert line in metrics, line


async def test_bad_requests_are_400_with_the_rule(broker: Any, redis_url: str, tmp_path: Path) -> None:
    stack = make_stack(broker, redis_url, tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(stack.settings)), base_url="http://api"
    ) as api:
        cases = {
            "interval is required": {"from": "2024-01-01", "to": "2024-02-01"},
            "one of day, week, month": {"interval": "year", "from": "2024-01-01", "to": "2024-02-01"},
            "from is required": {"interval": "day", "to": "2024-02-01"},
            "to must be a day as YYYY-MM-DD": {"interval": "day", "from": "2024-01-01", "to": "20240201"},
            "from must be a day": {"interval": "day", "from": "2024-02-30", "to": "2024-03-01"},
            "on or before": {"interval": "week", "from": "2024-03-01", "to": "2024-02-01"},
            "at most 400": {"interval": "day", "from": "2023-01-01", "to": "2024-02-05"},
            "at most 1098": {"interval": "month", "from": "2020-01-01", "to": "2024-01-01"},
        }
        for rule, params in cases.items():
            response = await api.get("/lifecycle/intervals", params=params)
            assert response.status_code == 400, (rule, response.text)
            assert rule in response.json()["detail"], (rule, response.json())
        fine = await api.get(
            "/lifecycle/intervals", params={"interval": "week", "from": "2024-01-03", "to": "2024-01-03"}
        )
        assert fine.status_code == 200
        assert fine.json()["intervals"] == []  # an empty store's clock is 0: the range has not begun
