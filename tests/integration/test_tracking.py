"""The Segment/RudderStack HTTP tracking API, end to end with a real broker and redis-server,
and with Segment's own Python SDK as the client."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer
from segment.analytics.client import Client

from service.api.app import create_api
from service.dev.processes import free_port
from tests.processes import ServiceProcess, wait_for
from tests.stack import make_stack, wait_async

pytestmark = pytest.mark.integration

WRITE_KEY = "wk-test-0123"
API_KEY = "read-key-0123"
ORIGIN = "http://shop.test"
EXTRA = {
    "LIFECYCLE_WRITE_KEYS": f'["{WRITE_KEY}"]',
    "LIFECYCLE_API_KEY": API_KEY,
    "LIFECYCLE_CORS_ORIGINS": f'["{ORIGIN}"]',
}


def _basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        return [e for m in consumer for e in orjson.loads(m.value)]
    finally:
        consumer.close()


async def test_write_keys_cors_limits_and_mapping(broker: Any, redis_url: str, tmp_path: Path) -> None:
    stack = make_stack(broker, redis_url, tmp_path, **EXTRA)
    app = create_api(stack.settings)
    track = {"messageId": "t1", "userId": "alice", "event": "Order Completed", "properties": {"revenue": 12}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        r = await api.post("/v1/track", content=orjson.dumps(track))
        assert r.status_code == 401
        r = await api.post("/v1/track", content=orjson.dumps(track), headers=_basic("wrong"))
        assert r.status_code == 401
        r = await api.post("/v1/track", content=orjson.dumps(track), headers=_basic(WRITE_KEY))
        assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}, r.text
        in_body = {"writeKey": WRITE_KEY, "batch": [{**track, "type": "track", "messageId": "t2"}]}
        r = await api.post("/v1/batch", content=orjson.dumps(in_body))
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        # A write key only writes; the read API keeps its own key.
        for headers in (
            _basic(WRITE_KEY),
            {"authorization": f"Bearer {WRITE_KEY}"},
            {"x-api-key": WRITE_KEY},
        ):
            assert (await api.get("/users/alice", headers=headers)).status_code == 403
        assert (await api.get("/lifecycle", headers={"x-api-key": API_KEY})).status_code == 200
        # The API key does not write through the tracking API.
        r = await api.post("/v1/track", content=orjson.dumps(track), headers={"x-api-key": API_KEY})
        assert r.status_code == 401
        # CORS on the tracking paths only.
        preflight = {"origin": ORIGIN, "access-control-request-method": "POST"}
        r = await api.options(
            "/v1/batch", headers={**preflight, "access-control-request-headers": "content-type"}
        )
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        r = await api.options("/v1/batch", headers={**preflight, "origin": "http://evil.test"})
        assert r.status_code == 400
        r = await api.get("/lifecycle", headers={"origin": ORIGIN, "x-api-key": API_KEY})
        assert "access-control-allow-origin" not in r.headers
        # A zip bomb is a 413; a gzip body within the limit is fine.
        bomb = gzip.compress(b"{" + b" " * (stack.settings.collector_max_bytes + 10) + b"}")
        r = await api.post(
            "/v1/batch", content=bomb, headers={**_basic(WRITE_KEY), "content-encoding": "gzip"}
        )
        assert r.status_code == 413
        mixed = {
            "batch": [
                {"type": "page", "messageId": "p1", "anonymousId": "anon-1", "name": "Home"},
                {"type": "track", "messageId": "t3", "event": "Signed Up"},
                {"type": "alias", "messageId": "a1", "userId": "bob", "previousId": "anon-1"},
                {
                    "type": "track",
                    "messageId": "t4",
                    "userId": "bob",
                    "event": "x",
                    "properties": {"channel": "!!"},
                },
            ]
        }
        r = await api.post(
            "/v1/batch",
            content=gzip.compress(orjson.dumps(mixed)),
            headers={**_basic(WRITE_KEY), "content-encoding": "gzip"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 2 and [x["index"] for x in r.json()["rejected"]] == [1, 3]
        await app.state.collector.close()
    got = {e["event_id"]: e for e in _events(stack.settings.kafka_bootstrap, stack.settings.events_topic)}
    assert sorted(got) == ["a1", "p1", "t1", "t2"]
    assert (got["t1"]["type"], got["t1"]["user_id"], got["t1"]["amount"]) == ("order", "alice", 12)
    assert (got["p1"]["type"], got["p1"]["user_id"]) == ("visit", "anon-1")
    assert got["a1"]["properties"] == {"previous_id": "anon-1"}


def test_segment_python_sdk_lands_users(broker: Any, redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    stack = make_stack(broker, redis_url, tmp_path, LIFECYCLE_API_PORT=str(port), **EXTRA)
    worker = stack.worker()
    api = ServiceProcess("api", stack.env, tmp_path / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    read = {"x-api-key": API_KEY}

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    errors: list[Any] = []
    try:
        wait_for(up, 30, "the API", api)
        sdk = Client(WRITE_KEY, host=url, on_error=lambda e, batch: errors.append(e), gzip=True)
        start = datetime.now(UTC) - timedelta(days=2)
        sdk.page(anonymous_id="anon-7", name="Home", timestamp=start)
        sdk.identify("carol", {"plan": "pro"}, anonymous_id="anon-7", timestamp=start + timedelta(minutes=1))
        sdk.track("carol", "Signed Up", timestamp=start + timedelta(minutes=2))
        sdk.track("carol", "Order Completed", {"revenue": 30.5}, timestamp=start + timedelta(minutes=3))
        sdk.track("dave", "Product Viewed", timestamp=start + timedelta(minutes=4))
        sdk.alias("anon-7", "carol", timestamp=start + timedelta(minutes=5))
        sdk.flush()
        sdk.join()
        assert errors == []

        def landed() -> bool:
            r = httpx.get(f"{url}/users/carol", headers=read, timeout=2)
            return r.status_code == 200 and r.json()["orders"] == 1

        wait_for(landed, 120, "carol's order applied", worker)
        carol = httpx.get(f"{url}/users/carol", headers=read).json()
        assert carol["revenue"] == 30.5
        assert carol["event_counts"].get("register") == 1 and carol["event_counts"].get("order") == 1
        wait_for(lambda: httpx.get(f"{url}/users/dave", headers=read).status_code == 200, 60, "dave", worker)
        dave = httpx.get(f"{url}/users/dave", headers=read).json()
        assert dave["first_seen"] == int((start + timedelta(minutes=4)).timestamp() * 1000)

        # identify (with the anonymous id) and alias merged anon-7 into carol: its page view is
        # carol's first sight, and the anonymous id counts nowhere else
        def merged() -> bool:
            r = httpx.get(f"{url}/users/carol", headers=read, timeout=2).json()
            return bool(r["first_seen"] == int(start.timestamp() * 1000))

        wait_for(merged, 60, "anon-7 merged into carol", worker)
        carol = httpx.get(f"{url}/users/carol", headers=read).json()
        assert carol["event_counts"].get("visit") == 1 and carol["orders"] == 1
        asked = httpx.get(f"{url}/users/anon-7", headers=read).json()
        assert asked["user_id"] == "carol" and asked["merged_from"] == "anon-7"
        assert httpx.get(f"{url}/lifecycle", headers=read).json()["total"] == 2  # carol and dave
    finally:
        api.stop()
        worker.stop()


async def test_bridge_maps_a_topic_of_segment_messages(broker: Any, redis_url: str, tmp_path: Path) -> None:
    """What RudderStack's Kafka destination writes (one tracking message per Kafka message)
    lands as canonical events; a message that is no event is dead-lettered with its reason."""
    from kafka import KafkaProducer

    from service.kafka.topics import create_topics

    stack = make_stack(broker, redis_url, tmp_path)
    s = stack.settings
    source = f"{s.events_topic}.segment"
    create_topics(s.kafka_bootstrap, {source: 2})
    start = datetime.now(UTC) - timedelta(days=1)
    messages: list[dict[str, Any]] = [
        {
            "type": "track",
            "messageId": f"s{i}",
            "userId": f"user-{i % 30}",
            "event": "Order Completed" if i % 3 == 0 else "Product Viewed",
            "properties": {"revenue": 10} if i % 3 == 0 else {},
            "context": {"campaign": {"source": "Newsletter"}},
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
        }
        for i in range(90)
    ]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for msg in messages:
        producer.send(source, value=orjson.dumps(msg), key=msg["userId"].encode())
    producer.send(source, value=orjson.dumps({"type": "track", "messageId": "bad", "event": "x"}))
    producer.flush()
    producer.close()
    worker = stack.worker()
    bridge = ServiceProcess(
        "bridge", stack.env, tmp_path / "bridge.log", ["--from", source, "--format", "segment"]
    ).start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(s)), base_url="http://api"
        ) as c:

            async def landed() -> bool:
                user = await c.get("/users/user-0")
                return user.status_code == 200 and user.json()["orders"] == 3

            await wait_async(landed, 120, "the mapped events applied")
            await wait_async(lambda: _total(c, 30), 60, "every user of the topic")
            user = (await c.get("/users/user-0")).json()
            assert user["channel"] == "newsletter" and user["revenue"] == 30
        consumer = KafkaConsumer(
            s.dlq_topic,
            bootstrap_servers=s.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        dead = [dict(m.headers) for m in consumer]
        consumer.close()
        assert [h["x-error-reason"] for h in dead] == [b"a message needs a userId or an anonymousId"]
    finally:
        bridge.stop()
        worker.stop()


async def _total(client: httpx.AsyncClient, expected: int) -> bool:
    return bool((await client.get("/lifecycle")).json()["total"] == expected)
