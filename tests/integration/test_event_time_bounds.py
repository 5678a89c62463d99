"""Event time is bounded by settings: far-future events never move a clock, and the
earliest accepted time can be moved back so older real logs can be backfilled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer

from service.api.app import create_api
from service.core.durations import DAY_MS
from tests import reference as ref
from tests.stack import T0, Stack, make_stack, visit

pytestmark = pytest.mark.integration

YEAR_2090 = 3_786_912_000_000  # 2090-01-01T00:00:00Z
YEAR_1998 = 883_612_800_000  # 1998-01-01T00:00:00Z


def _dead_letters(stack: Stack) -> list[tuple[bytes, str]]:
    s = stack.settings
    consumer = KafkaConsumer(
        s.dlq_topic,
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        return [(m.value, dict(m.headers)["x-error-reason"].decode()) for m in consumer]
    finally:
        consumer.close()


def _apply_single(stack: Stack, events: list[dict[str, Any]]) -> None:
    """Publish `events` one per message and run a worker until it applied them."""
    stack.publish(events, single=True)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
    finally:
        worker.stop()


async def _lifecycle(stack: Stack) -> dict[str, Any]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        body: dict[str, Any] = (await api.get("/lifecycle")).json()
        return body


async def test_a_far_future_event_is_dead_lettered_and_moves_no_clock(stack: Stack) -> None:
    good = [visit(f"g{i}", f"user-{i}", T0 + i * DAY_MS) for i in range(20)]
    poison = visit("poison", "time-traveller", YEAR_2090)
    _apply_single(stack, [*good[:10], poison, *good[10:]])
    body = await _lifecycle(stack)
    profile = stack.settings.loaded_profile
    users = ref.reference(good, profile)
    assert body["as_of"] == good[-1]["ts"]
    assert body["counts"] == ref.lifecycle_counts(users, good[-1]["ts"], profile)
    dead = _dead_letters(stack)
    assert len(dead) == 1 and b"poison" in dead[0][0]
    assert "LIFECYCLE_MAX_FUTURE" in dead[0][1], dead[0][1]


async def test_events_before_2000_are_dead_lettered_unless_the_earliest_time_is_moved_back(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "moved").mkdir()
    old = [visit(f"o{i}", f"old-{i}", YEAR_1998 + i * DAY_MS) for i in range(5)]
    default = make_stack(broker, redis_url, tmp_path / "default")
    _apply_single(default, old)
    assert (await _lifecycle(default))["total"] == 0
    reasons = [reason for _, reason in _dead_letters(default)]
    assert len(reasons) == 5 and all("LIFECYCLE_MIN_EVENT_TIME" in r for r in reasons), reasons

    moved = make_stack(broker, redis_url, tmp_path / "moved", LIFECYCLE_MIN_EVENT_TIME="1995-01-01")
    _apply_single(moved, old)
    body = await _lifecycle(moved)
    assert body["total"] == 5 and body["as_of"] == old[-1]["ts"]
    assert _dead_letters(moved) == []


async def test_the_collector_refuses_a_far_future_event_and_takes_the_others(stack: Stack) -> None:
    events = [visit("now", "u1", T0), visit("ahead", "u2", YEAR_2090), visit("old", "u3", YEAR_1998)]
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        r = await api.post("/v1/events", json=events)
        await app.state.collector.close()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    reasons = {item["index"]: item["reason"] for item in body["rejected"]}
    assert "LIFECYCLE_MAX_FUTURE" in reasons[1] and "LIFECYCLE_MIN_EVENT_TIME" in reasons[2], reasons
