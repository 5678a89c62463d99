"""One event log replayed (`lifecycle replay`) into profiles of three time zones: each store
counts the cohorts, retention, active users, history day and audience day bounds of its own
zone, equal to the reference's local days; Shanghai's cohorts are not UTC's.

The log spans New York's spring DST change (2026-03-08) and carries users whose two visits
are half an hour either side of midnight in Shanghai and in New York.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from redis import Redis

from service.api.app import create_api
from service.core.calendar import Calendar
from service.core.profile import Profile, load_profile
from service.dev.generator import generate
from service.storage.keys import history as history_key
from tests import reference as ref
from tests.stack import make_stack, read_counters, visit, wait_async

pytestmark = pytest.mark.integration

START = 1_771_545_600_000  # 2026-02-20T00:00:00Z; 30 days, over New York's spring change
ZONES = ["UTC", "Asia/Shanghai", "America/New_York"]


def _local(text: str, zone: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def _log() -> list[dict[str, Any]]:
    events = list(generate(users=150, start_ms=START, days=30, seed=3, profile=load_profile("daily_app")))
    for zone, tag in (("Asia/Shanghai", "sh"), ("America/New_York", "ny")):
        for day in ("2026-03-01", "2026-03-08"):  # 03-08: New York's 23-hour day
            evening = _local(f"{day}T23:30", zone)
            night = evening + 3_600_000  # 00:30 the next local day (an hour later, DST or not)
            assert Calendar(zone).day(night) == Calendar(zone).day(evening) + 1
            events.append(visit(f"{tag}-{day}-1", f"{tag}-{day}", evening))
            events.append(visit(f"{tag}-{day}-2", f"{tag}-{day}", night))
    return sorted(events, key=lambda e: e["ts"])


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    events = _log()
    path = tmp_path_factory.mktemp("tz-log") / "history.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path, events


@pytest.mark.parametrize("zone", ZONES)
async def test_a_replay_counts_the_days_of_the_profiles_time_zone(
    zone: str, log_file: tuple[Path, list[dict[str, Any]]], broker: Any, redis_url: str, tmp_path: Path
) -> None:
    path, events = log_file
    profile_file = tmp_path / "profile.yaml"
    builtin = Path(__file__).resolve().parents[2] / "service" / "profiles" / "daily_app.yaml"
    profile_file.write_text(builtin.read_text() + f"time_zone: {zone}\n")
    stack = make_stack(broker, redis_url, tmp_path, LIFECYCLE_PROFILE=str(profile_file))
    profile = stack.settings.loaded_profile
    assert profile.calendar.name == zone

    replay = subprocess.run(
        [sys.executable, "-m", "service.cli", "replay", str(path)],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replayed {len(events)} events" in replay.stdout
    worker = stack.worker()
    try:

        async def all_applied() -> bool:
            counters = await read_counters(stack)
            return counters.get("applied", 0) + counters.get("unknown_user_events", 0) == len(events)

        await wait_async(all_applied, 120, "every replayed event applied")
    finally:
        worker.stop()

    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        await _check(api, app, stack.settings.redis_url, stack.settings.key_prefix, events, profile)


async def _check(
    api: httpx.AsyncClient,
    app: Any,
    redis_url: str,
    prefix: str,
    events: list[dict[str, Any]],
    profile: Profile,
) -> None:
    zone = profile.calendar.name
    users = ref.reference(events, profile)
    now = max(e["ts"] for e in events)
    first, last = ref.local_day(START, profile), ref.local_day(now, profile)
    body = (
        await api.get("/retention", params={"from": Calendar.iso(first), "to": Calendar.iso(last)})
    ).json()
    sizes, retained = ref.retention(events, profile)
    got_sizes = {Calendar.from_iso(c["cohort"]): c["users"] for c in body["cohorts"] if c["users"]}
    assert got_sizes == dict(+sizes)
    got_back = {
        (Calendar.from_iso(c["cohort"]), int(n)): r["users"]
        for c in body["cohorts"]
        for n, r in c["retained"].items()
        if r["users"]
    }
    assert got_back == dict(+retained)
    utc_sizes, _ = ref.retention(events, load_profile("daily_app"))
    assert (dict(+sizes) == dict(+utc_sizes)) == (zone == "UTC")  # another zone, other cohorts

    tag = {"Asia/Shanghai": "sh", "America/New_York": "ny"}.get(zone)
    for day in ("2026-03-01", "2026-03-08") if tag else ():
        # the zone's own late-evening users: first seen that local day, back on day 1
        assert ref.local_day(users[f"{tag}-{day}"].first_seen, profile) == Calendar.from_iso(day)
        one = (await api.get("/retention", params={"cohort": day})).json()["cohorts"][0]
        assert one["retained"]["1"]["users"] >= 1

    indicators = (await api.get("/indicators")).json()
    assert indicators["active"] == ref.active_users(users, now, profile)

    since = Calendar.iso(last - 3)
    filters = {"state": ["new", "retained"], "entered_since": since}
    page = (await api.get("/audiences/users", params={**filters, "limit": 1000})).json()
    want = ref.audience(users, now, profile, filters)
    assert {r["user_id"]: r for r in page["users"]} == want and want

    await app.state.history.record()
    client = Redis.from_url(redis_url)
    try:
        assert [f.decode() for f in client.hkeys(history_key(prefix))] == [
            ref.local_date(now, profile).isoformat()
        ]
    finally:
        client.close()
