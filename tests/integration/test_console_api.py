"""What the console reads beyond the existing endpoints: lifecycle history and `/ops`."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import httpx
import orjson
import pytest
import redis
from pydantic import SecretStr

from service.api.app import create_api
from service.core.calendar import UTC_CALENDAR
from service.core.durations import DAY_MS
from service.core.history import day_of
from service.core.partitioning import partition_for
from service.dev.processes import free_port
from service.kafka.publisher import EventPublisher
from service.settings import Settings
from service.storage.keys import history as history_key
from tests.processes import applied_offsets
from tests.stack import T0, Stack, visit, wait_async

pytestmark = pytest.mark.integration


def _events(prefix: str, users: range, ts: int) -> list[dict[str, Any]]:
    return [visit(f"{prefix}-{u}", f"user-{u}", ts + u, channel="ads") for u in users]


async def test_history_keeps_the_last_snapshot_of_each_day_and_today_is_live(stack: Stack) -> None:
    """Event clock: day 1 is recorded twice (the later snapshot wins), day 3 is live, day 2 and
    the days before day 1 were never recorded and are absent."""
    app = create_api(stack.settings)
    history = app.state.history
    worker = stack.worker()
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api")
    try:
        stack.publish(_events("a", range(10), T0))
        stack.wait_applied(worker)
        await history.record()
        stack.publish(_events("b", range(10, 25), T0 + 3_600_000))
        stack.wait_applied(worker)
        await history.record()
        day1 = (await api.get("/lifecycle")).json()
        assert day1["total"] == 25
        stack.publish(_events("c", range(25, 30), T0 + 2 * DAY_MS))
        stack.wait_applied(worker)
    finally:
        worker.stop()
    try:
        await _check_history(api, day1)
    finally:
        await api.aclose()


async def _check_history(api: httpx.AsyncClient, day1: dict[str, Any]) -> None:
    now = (await api.get("/lifecycle")).json()
    body = (await api.get("/lifecycle/history", params={"days": 5})).json()
    assert [d["day"] for d in body["days"]] == [
        day_of(T0, UTC_CALENDAR),
        day_of(T0 + 2 * DAY_MS, UTC_CALENDAR),
    ]
    first, today = body["days"]
    assert (first["as_of"], first["total"], first["counts"]) == (day1["as_of"], 25, day1["counts"])
    assert (today["as_of"], today["total"], today["counts"]) == (now["as_of"], 30, now["counts"])
    assert body["as_of"] == now["as_of"]
    short = (await api.get("/lifecycle/history", params={"days": 1})).json()
    assert [d["day"] for d in short["days"]] == [day_of(T0 + 2 * DAY_MS, UTC_CALENDAR)]
    for bad in (0, 91, "x"):
        assert (await api.get("/lifecycle/history", params={"days": bad})).status_code == 422


async def test_every_api_process_records_history_on_its_own(stack: Stack) -> None:
    """The recorder runs in the API's lifespan, at LIFECYCLE_HISTORY_INTERVAL, without requests."""
    worker = stack.worker()
    try:
        stack.publish(_events("a", range(5), T0))
        stack.wait_applied(worker)
    finally:
        worker.stop()
    settings = stack.settings.model_copy(update={"history_interval": 0.2})
    app = create_api(settings)
    client = redis.Redis.from_url(settings.redis_url)
    key = history_key(settings.key_prefix)
    try:
        async with app.router.lifespan_context(app):
            await wait_async(
                lambda: _hexists(client, key, day_of(T0 + 4, UTC_CALENDAR)), 10, "a history snapshot"
            )
        stored = orjson.loads(client.hget(key, day_of(T0 + 4, UTC_CALENDAR)) or b"{}")
        assert stored["total"] == 5 and stored["counts"]["new"] == 5 and stored["as_of"] == T0 + 4
    finally:
        client.close()


async def _hexists(client: redis.Redis, key: str, field: str) -> bool:
    return bool(client.hexists(key, field))


async def test_ops_counts_dead_letters_applied_events_lag_and_last_commit(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    s = stack.settings
    started_ms = int(time.time() * 1000)
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, stack.partitions, single=True)
    try:
        for i, value in enumerate([b"not json", orjson.dumps({"event_id": "x"}), orjson.dumps(42)]):
            pub.publish_raw(
                value, key=f"bad{i}".encode(), partition=partition_for("user-1", stack.partitions)
            )
        pub.flush()
        for p, off in pub.acked_offsets.items():
            stack.published[p] = max(stack.published.get(p, -1), off)
    finally:
        pub.close()
    stack.publish(_events("a", range(20), T0))
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
    finally:
        worker.stop()
    body = (await api.get("/ops")).json()
    assert body["dlq_events"] == 3
    assert body["events_applied"] == 20
    assert body["kafka_error"] is None
    assert body["lag"]["total"] == 0 and set(body["lag"]["partitions"].values()) == {0}
    applied = applied_offsets(s.redis_url, s.key_prefix, stack.partitions)
    assert body["applied_offsets"] == {str(p): o for p, o in applied.items()}
    assert started_ms <= body["last_commit_ms"] <= int(time.time() * 1000)

    # With the worker stopped, every message published is lag: one record batch per message,
    # so even a broker that reports the last batch's base offset as the end is exact here.
    pending: dict[int, int] = {}
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, stack.partitions, single=True)
    try:
        for ev in _events("b", range(100, 112), T0 + 1000):
            pub.publish([ev])
            pub.flush()
            p = partition_for(ev["user_id"], stack.partitions)
            pending[p] = pending.get(p, 0) + 1
    finally:
        pub.close()
    await wait_async(lambda: _lag_is(api, pending), 10, f"lag {pending}")


async def _lag_is(api: httpx.AsyncClient, pending: dict[int, int]) -> bool:
    lag = (await api.get("/ops")).json()["lag"]
    want = {str(p): pending.get(p, 0) for p in range(len(lag["partitions"]))}
    return bool(lag["partitions"] == want and lag["total"] == sum(pending.values()))


async def test_ops_without_a_broker_still_answers_from_redis(redis_url: str) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", redis_url=redis_url, partitions=2)
    app = create_api(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        body = (await api.get("/ops")).json()
    assert body["lag"] is None and body["kafka_error"]
    assert body["applied_offsets"] == {"0": -1, "1": -1} and body["last_commit_ms"] is None


async def test_the_console_and_its_assets_need_no_key_but_its_data_does(stack: Stack) -> None:
    """The page must load to ask for the key; everything it reads stays behind the key."""
    settings = stack.settings.model_copy(update={"api_key": SecretStr("k3y")})
    app = create_api(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        pages = [await api.get(path) for path in ("/", "/console", "/console/")]
        for page in pages:
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "<title>Lifecycle console</title>" in page.text
        assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', pages[0].text)
        assert {a.rsplit(".", 1)[1] for a in assets} == {"js", "css"}
        for asset in assets:
            assert (await api.get(asset)).status_code == 200, asset
        for path in ("/lifecycle/history", "/ops", "/lifecycle"):
            assert (await api.get(path)).status_code == 401, path
            assert (await api.get(path, headers={"X-API-Key": "k3y"})).status_code == 200, path
        schema = (await api.get("/openapi.json", headers={"X-API-Key": "k3y"})).json()
        assert {"/lifecycle/history", "/ops"} <= schema["paths"].keys()
        assert "/" not in schema["paths"] and "/console" not in schema["paths"]


async def test_the_history_recorder_stops_when_cancelled_mid_command(stack: Stack) -> None:
    """The API's shutdown cancels the recorder. redis-py (8.1.0) sometimes swallows a
    cancellation that lands mid-command (1 in 5 to 10 measured); the recorder must stop
    anyway, not sleep out its interval and hold the shutdown."""
    app = create_api(stack.settings)
    history = app.state.history
    held = 0
    for i in range(60):
        recorder = asyncio.create_task(history.run())
        await asyncio.sleep((i % 20) * 0.0005)  # landing at different points of a record
        recorder.cancel()
        done, _ = await asyncio.wait({recorder}, timeout=2)
        held += not done
        if not done:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
        else:
            assert recorder.cancelled()
    await app.state.queries.redis.aclose()
    assert held == 0, f"{held} of 60 cancellations did not stop the recorder"
