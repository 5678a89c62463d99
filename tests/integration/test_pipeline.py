"""Events through Kafka and the Faust worker into Redis and out of the API, for real.

Each test runs `lifecycle worker` as a child process against the session's broker
(Tansu or Apache Kafka) and a real redis-server, and compares what the API reports with
`tests.reference`, computed directly from the same events.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from service.api import create_api
from service.cli import ensure_topics
from service.core.durations import DAY_MS
from service.core.partitioning import partition_for
from service.keys import all_partitions
from service.publisher import EventPublisher
from service.queries import Queries
from service.settings import Settings
from tests import reference as ref
from tests.processes import ServiceProcess, applied_offsets, wait_applied, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 4
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    workdir: Path

    def worker(self) -> ServiceProcess:
        return ServiceProcess("worker", self.env, self.workdir / "worker.log").start()

    def publish(self, events: list[dict[str, Any]], *, single: bool = False) -> None:
        pub = EventPublisher(
            self.settings.kafka_bootstrap,
            self.settings.events_topic,
            PARTITIONS,
            envelope_size=50,
            single=single,
        )
        try:
            pub.publish(events)
            pub.flush()
        finally:
            pub.close()

    def wait_swept(self, proc: ServiceProcess, timeout: float = 60) -> None:
        """Wait until every partition was swept up to its own event clock."""
        client = SyncRedis.from_url(self.settings.redis_url)

        def swept() -> bool:
            metas = [
                client.hmget(k.meta, ["wm", "swept"])
                for k in all_partitions(self.settings.key_prefix, PARTITIONS)
            ]
            return all(wm is None or wm == sw for wm, sw in metas)

        try:
            wait_for(swept, timeout, "sweeps to reach the event clock", proc)
        finally:
            client.close()

    def wait_applied(self, proc: ServiceProcess, timeout: float = 120) -> None:
        s = self.settings
        wait_applied(s.redis_url, s.key_prefix, s.kafka_bootstrap, s.events_topic, PARTITIONS, timeout, proc)


@pytest.fixture
def stack(broker: Any, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LIFECYCLE_REDIS_URL": redis_url,
        "LIFECYCLE_EVENTS_TOPIC": f"events-{suffix}",
        "LIFECYCLE_DLQ_TOPIC": f"events-{suffix}.dlq",
        "LIFECYCLE_PARTITIONS": str(PARTITIONS),
        "LIFECYCLE_APP_ID": f"lifecycle-{suffix}",
        "LIFECYCLE_KEY_PREFIX": f"t{suffix}",
        "LIFECYCLE_CLOCK": "event",
        "LIFECYCLE_PROFILE": "daily_app",
        "LIFECYCLE_WORKER_PORT": "0",
        "LIFECYCLE_SWEEP_INTERVAL": "0.2",
        "LIFECYCLE_SESSION_TIMEOUT": "6",
    }
    settings = Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in env.items()})
    ensure_topics(settings)
    yield Stack(env, settings, tmp_path)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client


def visit(eid: str, uid: str, ts: int, etype: str = "visit", **extra: Any) -> dict[str, Any]:
    return {"event_id": eid, "user_id": uid, "type": etype, "ts": ts, **extra}


def history(users: int = 300) -> list[dict[str, Any]]:
    from service.core.profile import load_profile
    from service.generator import generate

    return list(generate(users=users, start_ms=T0, days=60, seed=7, profile=load_profile("daily_app")))


async def assert_matches_reference(
    api: httpx.AsyncClient, events: list[dict[str, Any]], profile: Any
) -> None:
    users = ref.reference(events, profile)
    now = max(ev["ts"] for ev in events)
    body = (await api.get("/lifecycle")).json()
    assert body["as_of"] == now
    assert body["total"] == len(users)
    assert body["counts"] == ref.lifecycle_counts(users, now, profile)
    channels = {u.channel or "-" for u in users.values()}
    for channel in channels:
        body = (await api.get("/lifecycle", params={"channel": channel})).json()
        assert body["counts"] == ref.lifecycle_counts(users, now, profile, channel), channel
        funnel = (await api.get("/funnel", params={"channel": channel})).json()
        assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users, profile, channel), channel
    funnel = (await api.get("/funnel")).json()
    assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users, profile)
    for uid in sorted(users)[:25]:
        got = (await api.get(f"/users/{uid}")).json()
        want = users[uid]
        assert (got["first_seen"], got["last_active"], got["channel"]) == (
            want.first_seen,
            want.last_active,
            want.channel,
        )
        assert got["orders"] == want.orders
        assert got["revenue"] == pytest.approx(want.revenue)
        assert got["funnel_stage_index"] == ref.stage_of(want, profile)


async def test_history_through_worker_matches_reference(stack: Stack, api: httpx.AsyncClient) -> None:
    events = history()
    half = len(events) // 2
    stack.publish(events[:half])  # envelopes
    stack.publish(events[half:], single=True)  # one event per message
    stack.publish(events[:500], single=True)  # duplicates: applied once
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        await assert_matches_reference(api, events, stack.settings.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        assert (await api.get("/users/nobody-here")).status_code == 404
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        worker.stop()


async def test_bad_input_goes_to_the_dead_letter_topic_while_good_input_flows(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    s = stack.settings
    good = [visit(f"g{i}", f"user-{i}", T0 + i, channel="ads") for i in range(40)]
    bad_values: list[bytes] = [
        b"not json",
        b"",
        orjson.dumps({"event_id": "x1", "user_id": "u"}),  # no type, no ts
        orjson.dumps(visit("x2", "u", T0, ts_extra=1)),  # unknown field
        orjson.dumps(visit("x3", "u" * 129, T0)),  # oversize user id
        orjson.dumps(visit("x4", "u", "yesterday")),  # type: ignore[arg-type]
        orjson.dumps([visit("x5", "user-1", T0), {"event_id": "x6"}]),  # envelope with one bad event
        orjson.dumps(42),
    ]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for i, value in enumerate(bad_values):
        producer.send(
            s.events_topic, key=f"k{i}".encode(), value=value, partition=partition_for("user-1", PARTITIONS)
        )
    producer.flush()
    producer.close()
    stack.publish(good, single=True)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        consumer = KafkaConsumer(
            s.dlq_topic,
            bootstrap_servers=s.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        dead = list(consumer)
        consumer.close()
        reasons = {dict(m.headers)["x-error-reason"].decode() for m in dead}
        assert len(dead) == len(bad_values)  # the envelope's good event applies; its bad one is dead-lettered
        assert any("not JSON" in r for r in reasons)
        assert any("unknown field" in r for r in reasons)
        assert any("user_id" in r for r in reasons)
        assert any("RFC 3339" in r for r in reasons)
        envelope_dead = [m for m in dead if b"x6" in m.value]
        assert dict(envelope_dead[0].headers)["x-envelope-index"] == b"1"
        assert orjson.loads(envelope_dead[0].value) == {"event_id": "x6"}
        body = (await api.get("/lifecycle")).json()
        assert body["total"] == 40
        user = (await api.get("/users/user-1")).json()
        assert user["event_counts"] == {"visit": 2}  # g1 and x5 from the mixed envelope
    finally:
        worker.stop()


async def test_time_moves_users_through_stages_in_event_clock(stack: Stack, api: httpx.AsyncClient) -> None:
    """Users go silent, churned and dead without any event of theirs: the clock moves them."""
    profile = stack.settings.loaded_profile
    th = profile.thresholds
    quiet = [f"quiet-{i}" for i in range(30)]
    events = [visit(f"q{i}", uid, T0) for i, uid in enumerate(quiet)]
    # a busy user in every partition moves each partition's event clock past the thresholds
    busy = {partition_for(f"busy-{i}", PARTITIONS): f"busy-{i}" for i in range(64)}
    assert len(busy) == PARTITIONS
    worker = stack.worker()
    try:
        stack.publish(events)
        stack.wait_applied(worker)
        for step, offset in enumerate((th.silent_after, th.churn_after, th.dead_after)):
            stack.publish([visit(f"b{step}-{p}", uid, T0 + offset) for p, uid in busy.items()])
            stack.wait_applied(worker)
            expected = ("silent", "churned", "dead")[step]

            async def moved(expected: str = expected) -> bool:
                body = (await api.get("/lifecycle")).json()
                return body["counts"][expected] == len(quiet)

            await wait_async(moved, 30, f"quiet users {expected}")
        # each crossing recorded exactly once, by the sweeps
        all_events = events + [
            visit(f"b{step}-{p}", uid, T0 + offset)
            for step, offset in enumerate((th.silent_after, th.churn_after, th.dead_after))
            for p, uid in busy.items()
        ]
        stack.wait_swept(worker)
        assert transition_counts(await read_counters(stack)) == ref.transitions(
            all_events, profile, T0 + th.dead_after
        )
        # a dead user who comes back is recalled from dead
        stack.publish([visit("back", quiet[0], T0 + th.dead_after + DAY_MS)])
        stack.wait_applied(worker)
        user = (await api.get(f"/users/{quiet[0]}")).json()
        assert user["state"] in ("retained", "new")
        counters = await read_counters(stack)
        assert counters["tr|dead|retained"] == 1
    finally:
        worker.stop()


async def read_counters(stack: Stack) -> dict[str, float]:
    """Every counter of the worker, summed over partitions, read as the API reads them."""
    s = stack.settings
    client = Redis.from_url(s.redis_url)
    try:
        return await Queries(client, s.key_prefix, PARTITIONS, s.loaded_profile, s.clock).counters()
    finally:
        await client.aclose()


async def assert_transitions_match(
    stack: Stack, worker: ServiceProcess, events: list[dict[str, Any]]
) -> None:
    """Every lifecycle transition counted exactly once: events and sweeps, across restarts."""
    stack.wait_swept(worker)
    clocks = ref.partition_clocks(events, PARTITIONS)
    expected = ref.transitions(events, stack.settings.loaded_profile, clocks)
    assert transition_counts(await read_counters(stack)) == dict(expected)


def transition_counts(counters: dict[str, float]) -> dict[str, int]:
    return {k: int(v) for k, v in counters.items() if k.startswith("tr|") and v}


async def wait_async(predicate: Any, timeout: float, what: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_worker_killed_mid_stream_neither_doubles_nor_drops(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    events = history(users=1500)
    stack.publish(events, single=True)
    s = stack.settings
    kills = 0
    worker = stack.worker()
    try:
        for _ in range(2):
            # let it apply part of the stream, then kill -9 in the middle of it
            start = sum(applied_offsets(s.redis_url, s.key_prefix, PARTITIONS).values())
            wait_for(
                lambda start=start: (
                    sum(applied_offsets(s.redis_url, s.key_prefix, PARTITIONS).values()) > start + 300
                ),
                120,
                "progress before the kill",
                worker,
            )
            worker.kill()
            kills += 1
            worker = stack.worker()
        stack.wait_applied(worker, timeout=240)
        await assert_matches_reference(api, events, s.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        counters = await read_counters(stack)
        distinct = len({e["event_id"] for e in events})
        users = ref.reference(events, s.loaded_profile)
        applied = counters["applied"] + counters.get("unknown_user_events", 0)
        assert applied == distinct
        assert sum(v for k, v in counters.items() if k.startswith("tr|-|")) == len(users)
        assert kills == 2
    finally:
        worker.stop()
