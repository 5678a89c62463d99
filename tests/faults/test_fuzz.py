"""Hostile input through the real worker, broker and Redis: nothing bad applied, nothing good lost.

A generated mix (`tests.faults.hostile`) of valid events with hostile user ids and bad
messages of every kind — wrong types, huge strings, deep nesting, invalid UTF-8, NaN and
Infinity, timestamps far in the past or future — as single messages and inside
envelopes, and the same through the HTTP collector. Then: every bad message is on the
dead-letter topic exactly once with a reason, the state equals `tests.reference` over
the good events, the worker never exited, keys keep their `{p}` tag whatever the ids,
and no id or property value appears in the worker's INFO log or in any metric.

`LIFECYCLE_FAULTS=full`: 120,000 messages (~580,000 events, ~128,000 of them bad);
short (CI): 5,000 messages; a fifth of that again on a Redis Cluster of three masters.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from redis import RedisCluster

from service.api.app import create_api
from service.core.events import validate_event
from service.core.labels import OTHER_CHANNELS
from service.dev.processes import free_port
from service.dev.redis_server import RedisClusterNodes
from service.kafka.publisher import EventPublisher
from service.storage.client import discover, redis_client
from service.storage.keys import PartitionKeys
from service.storage.queries import Queries
from tests import reference as ref
from tests.faults.hostile import MARKER, Mix, bad_event_doc, dumps_lenient, good_event, mix
from tests.faults.scale import full
from tests.processes import sync_redis
from tests.stack import Stack, make_stack, read_counters

pytestmark = pytest.mark.integration

MESSAGES = 120_000 if full() else 5_000
USERS = 20_000 if full() else 1_000
POSTS = 200 if full() else 20  # collector requests of up to 100 events each
MAX_CHANNELS = 20  # channels with a metrics label of their own; events bring ~300
STORED_CHANNELS = 1000  # channels a partition keeps: more than the flood brings


def _publish(stack: Stack, run: Mix) -> None:
    """Send the run's messages in order, each to its partition; record the acknowledged offsets."""
    s = stack.settings
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, s.partitions)
    try:
        for key, partition, value in run.messages:
            pub.publish_raw(value, key, partition)
        pub.flush()
        for p, offset in pub.acked_offsets.items():
            stack.published[p] = max(stack.published.get(p, -1), offset)
    finally:
        pub.close()


async def _post_hostile(
    api: httpx.AsyncClient, rng: random.Random, run: Mix, posts: int
) -> list[dict[str, Any]]:
    """Mixed batches and hostile bodies to POST /v1/events; returns the events it accepted.

    The collector refuses bad events at the edge (listed by index, never dead-lettered)."""
    accepted: list[dict[str, Any]] = []
    n = 10_000_000
    for _ in range(posts):
        items: list[bytes] = []
        bad: list[int] = []
        good: list[dict[str, Any]] = []
        for i in range(rng.randint(1, 100)):
            n += 1
            if rng.random() < 0.3:
                doc = bad_event_doc(rng, n)
                value = dumps_lenient(doc)
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError:
                    value = orjson.dumps({"not": "an event"})
                items.append(value)
                bad.append(i)
            else:
                event = good_event(rng, n, rng.choice(run.hostile_ids))
                items.append(orjson.dumps(event))
                good.append(event)
        body = b"[" + b",".join(items) + b"]"
        if rng.random() < 0.3:
            response = await api.post("/v1/events", content=gzip.compress(body), headers=_GZIP)
        else:
            response = await api.post("/v1/events", content=body)
        assert response.status_code == (400 if not good else 200), response.text[:500]
        answer = response.json()
        assert [r["index"] for r in answer["rejected"]] == bad
        assert all(r["reason"] for r in answer["rejected"])
        assert answer["accepted"] == len(good)
        accepted += good
    for body, status in _HOSTILE_BODIES:
        response = await api.post("/v1/events", content=body)
        assert response.status_code == status, (body[:50], response.text[:300])
    bomb = gzip.compress(b"[" + b" " * (6 << 20) + b"]")  # 6 MB of blanks in ~6 kB
    response = await api.post("/v1/events", content=bomb, headers=_GZIP)
    assert response.status_code == 413
    response = await api.post("/v1/events", content=b"{}", headers={"content-encoding": "br"})
    assert response.status_code == 415
    return accepted


_GZIP = {"content-encoding": "gzip"}
_HOSTILE_BODIES = (
    (b"", 400),
    (b"NaN", 400),
    (b"\xff\xfe", 400),
    (b"[" * 5000 + b"]" * 5000, 400),
    (b'"a string"', 400),
    (b"[]", 400),
    (b"[1, 2, 3]", 400),
    (orjson.dumps([{"event_id": "e", "user_id": "u", "type": "visit", "ts": 0}] * 1001), 413),
    (b'{"event_id": "e", "user_id": "\\ud800", "type": "visit", "ts": 1700000000000}', 400),
)


def _dead_letters(stack: Stack, expected: int, timeout: float) -> list[Any]:
    """Every message of the DLQ topic: read until `expected` arrived and nothing more comes."""
    s = stack.settings
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(s.dlq_topic, p) for p in range(s.partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=50_000)
            got = [r for rs in batch.values() for r in rs]
            records += got
            if got:
                quiet_since = time.monotonic()
            elif len(records) >= expected and time.monotonic() - quiet_since > 3:
                break
        return records
    finally:
        consumer.close()


async def _check_aggregates(api: httpx.AsyncClient, events: list[dict[str, Any]], profile: Any) -> None:
    """Lifecycle counts and funnel, overall and per channel, equal the reference's."""
    users = ref.reference(events, profile)
    now = max(ev["ts"] for ev in events)
    body = (await api.get("/lifecycle")).json()
    assert (body["as_of"], body["total"]) == (now, len(users))
    assert body["counts"] == ref.lifecycle_counts(users, now, profile)
    funnel = (await api.get("/funnel")).json()
    assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users, profile)
    for channel in {u.channel or "-" for u in users.values()}:
        body = (await api.get("/lifecycle", params={"channel": channel})).json()
        assert body["counts"] == ref.lifecycle_counts(users, now, profile, channel), channel
        funnel = (await api.get("/funnel", params={"channel": channel})).json()
        assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users, profile, channel), channel


async def _check_users(stack: Stack, api: httpx.AsyncClient, events: list[dict[str, Any]]) -> int:
    """Every user's record, read as the API reads it, equals the reference's; and GET
    /users/{id} finds each hostile id (percent-encoded) of a sample."""
    s = stack.settings
    users = ref.reference(events, s.loaded_profile)
    client = redis_client(s)
    queries = Queries(client, s.key_prefix, s.partitions, s.loaded_profile, s.clock)
    try:
        uids = sorted(users)
        await discover(client)  # as the API does: see `service.redis_client.discover`
        for start in range(0, len(uids), 50):
            chunk = uids[start : start + 50]
            found = await asyncio.gather(*(queries.user(uid) for uid in chunk))
            for uid, got in zip(chunk, found, strict=True):
                want = users[uid]
                assert got is not None, uid
                assert got["user_id"] == uid
                assert (got["first_seen"], got["last_active"], got["channel"]) == (
                    want.first_seen,
                    want.last_active,
                    want.channel,
                ), uid
                assert got["orders"] == want.orders, uid
                assert got["revenue"] == pytest.approx(want.revenue), uid
                assert got["funnel_stage_index"] == ref.stage_of(want, s.loaded_profile), uid
    finally:
        await client.aclose()
    for uid in uids[:300]:
        response = await api.get(f"/users/{quote(uid, safe='')}")
        assert response.status_code == 200, (uid, response.text[:200])
        assert response.json()["user_id"] == uid
    return len(users)


def _channel_labels(text: str) -> set[str]:
    return {
        sample.labels["channel"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "channel" in sample.labels
    }


async def _check_channel_labels(api: httpx.AsyncClient, worker: str, population: str) -> None:
    """Hundreds of made-up channels: at most MAX_CHANNELS labels each, and the API's
    population series (labelled channels plus `~other`) still add up to the exact totals."""
    assert len(_channel_labels(worker)) <= MAX_CHANNELS + 1
    assert OTHER_CHANNELS in _channel_labels(worker)
    assert len(_channel_labels(population)) <= MAX_CHANNELS
    assert OTHER_CHANNELS in _channel_labels(population)
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(population):
        if family.name == "lifecycle_users":
            for sample in family.samples:
                sums[sample.labels["state"]] = sums.get(sample.labels["state"], 0) + sample.value
    assert sums == (await api.get("/lifecycle")).json()["counts"]


def _canonical(event: dict[str, Any]) -> dict[str, Any]:
    """The event with `ts` in epoch ms (the reference helpers compare times as numbers)."""
    checked = validate_event(event)
    assert not isinstance(checked, str), checked
    return checked.to_json()


def _check_keys(stack: Stack) -> None:
    """Whatever the ids, every key is `<prefix>:{p}:...` with a valid partition and holds no
    id; on a Redis Cluster every key of a partition is in its partition's slot."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{s.key_prefix}:*", count=10_000)]
        tag = re.compile(rf"^{re.escape(s.key_prefix)}:\{{(\d+)\}}:[a-z]+(:[A-Za-z0-9_.\-]+)?$")
        assert keys
        for key in keys:
            match = tag.match(key)
            assert match and int(match.group(1)) < s.partitions, key
            assert MARKER not in key
            if isinstance(client, RedisCluster):
                meta = PartitionKeys(s.key_prefix, int(match.group(1))).meta
                assert client.keyslot(key) == client.keyslot(meta), key
    finally:
        client.close()


async def _fuzz(stack: Stack, messages: int, users: int, posts: int, worker_port: int) -> None:
    started = time.monotonic()
    run = mix(20261123, messages, users, stack.partitions)
    generated = time.monotonic()
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        posted = await _post_hostile(api, random.Random(7), run, posts)
        await app.state.collector.close()
        worker = stack.worker()
        try:
            _publish(stack, run)
            published = time.monotonic()
            stack.wait_applied(worker, timeout=900 if full() else 180)
            applied = time.monotonic()
            letters = _dead_letters(stack, run.bad, timeout=300 if full() else 60)

            # Every bad message or envelope item is dead-lettered once, with a reason and its origin.
            origins = {
                (h["x-source-partition"], h["x-source-offset"], h.get("x-envelope-index"))
                for h in (dict(r.headers) for r in letters)
            }
            assert len(letters) == run.bad
            assert len(origins) == run.bad
            for record in letters:
                headers = dict(record.headers)
                assert headers["x-error-reason"]
                assert headers["x-source-topic"] == stack.settings.events_topic.encode()
            counters = await read_counters(stack)
            assert counters.get("rejected", 0) == run.bad
            assert counters.get("duplicates", 0) == 0 and counters.get("misrouted", 0) == 0

            # Every good one applied: the state is the reference's over the good events only.
            good = [_canonical(e) for e in posted + run.good]
            await _check_aggregates(api, good, stack.settings.loaded_profile)
            checked = await _check_users(stack, api, good)
            assert worker.alive(), worker.log_tail()
            _check_keys(stack)

            # No id or property value in the worker's metrics or INFO log, nor the API's metrics.
            scraped = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).text
            assert "lifecycle_events_total" in scraped
            assert MARKER not in scraped
            population = (await api.get("/metrics")).text
            assert MARKER not in population
            await _check_channel_labels(api, scraped, population)
        finally:
            worker.stop()
    log = (stack.workdir / "worker.log").read_text(errors="replace")
    assert " INFO " in log or "[INFO]" in log  # the log was written at INFO
    assert MARKER not in log
    assert "exiting" not in log
    print(
        f"\nfuzz{' (Redis Cluster)' if stack.settings.redis_cluster else ''}: {len(run.messages)} messages "
        f"({run.envelopes} envelopes), {len(good)} good events of {checked} users, {run.bad} bad -> "
        f"{len(letters)} dead letters; collector: {posts} requests, {len(posted)} accepted; generated in "
        f"{generated - started:.1f}s, published in {published - generated:.1f}s, applied "
        f"{applied - published:.1f}s later"
    )


def _stack(broker: Any, redis_url: str, workdir: Path, worker_port: int, **extra: str) -> Stack:
    return make_stack(
        broker,
        redis_url,
        workdir,
        LIFECYCLE_WORKER_PORT=str(worker_port),
        LIFECYCLE_METRICS_MAX_CHANNELS=str(MAX_CHANNELS),
        # every channel of the flood keeps its own counts, so the reference compares them;
        # the per-partition channel cap has a test of its own (test_channel_cap.py)
        LIFECYCLE_MAX_CHANNELS=str(STORED_CHANNELS),
        **extra,
    )


async def test_hostile_messages_are_dead_lettered_and_good_ones_applied(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    await _fuzz(_stack(broker, redis_url, tmp_path, port), MESSAGES, USERS, POSTS, port)


async def test_hostile_ids_on_a_redis_cluster(broker: Any, tmp_path: Path) -> None:
    """The same on three Redis Cluster masters: ids with `{`, `}` and `:` never move a key
    out of its partition's slot (they are never part of a key)."""
    with RedisClusterNodes(tmp_path / "cluster") as cluster:
        port = free_port()
        stack = _stack(broker, cluster.url, tmp_path, port, LIFECYCLE_REDIS_CLUSTER="true")
        await _fuzz(stack, MESSAGES // 5, USERS // 5, POSTS // 5, port)
