"""Return-gap curve, what-if counts and suggested thresholds: exact against the history, across a restart."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from service.api.app import create_api
from service.core.durations import parse_duration
from service.core.gaps import BOUNDS_MS
from tests import reference as ref
from tests.processes import applied_offsets, wait_for
from tests.stack import PARTITIONS, Stack, history

pytestmark = pytest.mark.integration

CHANNELS = (None, "organic", "search", "social", "referral", "ads", "-")


async def test_curve_what_if_and_suggestion_are_exact_after_a_restart(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    profile = s.loaded_profile
    events = history(users=800)
    stack.publish(events, single=True)
    worker = stack.worker()
    try:
        wait_for(
            lambda: sum(applied_offsets(s.redis_url, s.key_prefix, PARTITIONS).values()) > 500,
            120,
            "progress before the kill",
            worker,
        )
        worker.kill()
        worker = stack.worker()
        stack.wait_applied(worker)
        stack.wait_swept(worker)
    finally:
        worker.stop()

    users = ref.reference(events, profile)
    now = max(e["ts"] for e in events)
    gaps = ref.return_gaps(events, profile)
    assert sum(gaps.values()) > 100  # the history has real returns to speak of
    async with httpx.AsyncClient(transport=httpx.ASGITransport(create_api(s)), base_url="http://api") as api:
        for channel in CHANNELS:
            params = {"channel": channel} if channel else {}
            body = (await api.get("/lifecycle/return-curve", params=params)).json()
            assert body["as_of"] == now
            members = [u for u in users.values() if channel is None or (u.channel or "-") == channel]
            for i, point in enumerate(body["points"]):
                returns = sum(n for (ch, b), n in gaps.items() if b >= i and channel in (None, ch))
                idle = sum(1 for u in members if u.last_active <= now - BOUNDS_MS[i])
                assert (point["idle_ms"], point["returns_after"], point["still_idle"]) == (
                    BOUNDS_MS[i],
                    returns,
                    idle,
                )
                total = returns + idle
                assert point["return_probability"] == (pytest.approx(returns / total) if total else None)

            # what-if with the profile's own thresholds is exactly GET /lifecycle
            plain = (await api.get("/lifecycle", params=params)).json()
            own = (await api.get("/lifecycle/what-if", params=params)).json()
            assert (own["counts"], own["total"]) == (plain["counts"], plain["total"])

        specs = (
            {"new_window": "1d", "silent_after": "2d", "churn_after": "9d", "dead_after": "30d"},
            {"new_window": "20d", "silent_after": "21d", "churn_after": "40d", "dead_after": "50d"},
            {"new_window": "1h", "silent_after": "12h"},
        )
        for spec in specs:
            th = dataclasses.replace(profile.thresholds, **{k: parse_duration(v) for k, v in spec.items()})
            what_if = dataclasses.replace(profile, thresholds=th)
            for channel in CHANNELS:
                params = {**spec, **({"channel": channel} if channel else {})}
                body = (await api.get("/lifecycle/what-if", params=params)).json()
                assert "counts" in body, body
                assert body["counts"] == ref.lifecycle_counts(users, now, what_if, channel), (spec, channel)

        too_long = {"new_window": "60d", "silent_after": "61d", "churn_after": "90d", "dead_after": "200d"}
        r = await api.get("/lifecycle/what-if", params=too_long)
        assert r.status_code == 422 and "LIFECYCLE_WHATIF_MAX_NEW_WINDOW" in r.json()["detail"]
        r = await api.get("/lifecycle/what-if", params={"silent_after": "20d", "churn_after": "10d"})
        assert r.status_code == 422

    plot = tmp_path / "curve.png"
    command = [sys.executable, "-m", "service.cli", "thresholds", "suggest", "--plot", str(plot)]
    result = subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    snippet = yaml.safe_load(result.stdout[result.stdout.index("lifecycle:") :])["lifecycle"]
    silent, churn, dead = (parse_duration(snippet[k]) for k in ("silent_after", "churn_after", "dead_after"))
    assert silent < churn < dead
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    refused = subprocess.run(
        [*command[:5], "--channel", "nobody"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "only 0 returns observed" in refused.stderr
