"""A test stack: the service's settings on unique topics and keys, its processes, and checks.

Integration tests run `lifecycle worker` (and `bridge`) as child processes against the
session's broker and redis-server, and compare what the API reports with
`tests.reference`, computed directly from the same events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.kafka.options import kafka_python_options
from service.kafka.publisher import EventPublisher
from service.kafka.topics import ensure_topics
from service.settings import Settings
from service.storage.client import redis_client
from service.storage.keys import all_partitions
from service.storage.queries import Queries
from tests import reference as ref
from tests.processes import ServiceProcess, sync_redis, wait_applied, wait_for

PARTITIONS = 4
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    workdir: Path
    published: dict[int, int] = field(default_factory=dict)  # partition -> highest acknowledged offset

    @property
    def partitions(self) -> int:
        return self.settings.partitions

    def worker(self) -> ServiceProcess:
        return ServiceProcess("worker", self.env, self.workdir / "worker.log").start()

    def publish(self, events: list[dict[str, Any]], *, single: bool = False) -> None:
        pub = EventPublisher(
            self.settings.kafka_bootstrap,
            self.settings.events_topic,
            self.partitions,
            envelope_size=50,
            single=single,
            **kafka_python_options(self.settings),
        )
        try:
            pub.publish(events)
            pub.flush()
            for p, offset in pub.acked_offsets.items():
                self.published[p] = max(self.published.get(p, -1), offset)
        finally:
            pub.close()

    def wait_swept(self, proc: ServiceProcess, timeout: float = 60) -> None:
        """Wait until every partition was swept up to its own event clock."""
        client = sync_redis(self.settings.redis_url, self.settings.redis_cluster)

        def swept() -> bool:
            metas = [
                client.hmget(k.meta, ["wm", "swept"])
                for k in all_partitions(self.settings.key_prefix, self.partitions)
            ]
            return all(wm is None or wm == sw for wm, sw in metas)

        try:
            wait_for(swept, timeout, "sweeps to reach the event clock", proc)
        finally:
            client.close()

    def wait_applied(self, proc: ServiceProcess, timeout: float = 120) -> None:
        s = self.settings
        wait_applied(
            s.redis_url,
            s.key_prefix,
            s.kafka_bootstrap,
            s.events_topic,
            self.partitions,
            timeout,
            proc,
            self.published,
            s.redis_cluster,
        )


def visit(eid: str, uid: str, ts: int, etype: str = "visit", **extra: Any) -> dict[str, Any]:
    return {"event_id": eid, "user_id": uid, "type": etype, "ts": ts, **extra}


def history(users: int = 300) -> list[dict[str, Any]]:
    from service.core.profile import load_profile
    from service.dev.generator import generate

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
    listed = {f["name"]: f for f in (await api.get("/funnels")).json()["funnels"]}
    for named in profile.funnels:  # the named funnels, overall (per channel: test_funnels_api.py)
        want = ref.named_funnel_users(users, profile, named.name)
        assert [s["users"] for s in listed[named.name]["steps"]] == want, named.name
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


async def assert_transitions_match(
    stack: Stack, worker: ServiceProcess, events: list[dict[str, Any]]
) -> None:
    """Every lifecycle transition counted exactly once: events and sweeps, across restarts."""
    stack.wait_swept(worker)
    clocks = ref.partition_clocks(events, stack.partitions)
    expected = ref.transitions(events, stack.settings.loaded_profile, clocks)
    assert transition_counts(await read_counters(stack)) == dict(expected)


def transition_counts(counters: dict[str, float]) -> dict[str, int]:
    return {k: int(v) for k, v in counters.items() if k.startswith("tr|") and v}


async def read_counters(stack: Stack) -> dict[str, float]:
    """Every counter of the worker, summed over partitions, read as the API reads them."""
    s = stack.settings
    client = redis_client(s)
    try:
        return await Queries(client, s.key_prefix, s.partitions, s.loaded_profile, s.clock).counters()
    finally:
        await client.aclose()


async def wait_async(predicate: Any, timeout: float, what: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def make_stack(
    broker: Any, redis_url: str, workdir: Path, partitions: int = PARTITIONS, **extra: str
) -> Stack:
    """Settings on topics, keys and a group of their own; the topics created. `extra` overrides."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LIFECYCLE_REDIS_URL": redis_url,
        "LIFECYCLE_EVENTS_TOPIC": f"events-{suffix}",
        "LIFECYCLE_DLQ_TOPIC": f"events-{suffix}.dlq",
        "LIFECYCLE_TRIGGERS_TOPIC": f"triggers-{suffix}",
        "LIFECYCLE_PARTITIONS": str(partitions),
        "LIFECYCLE_APP_ID": f"lifecycle-{suffix}",
        "LIFECYCLE_KEY_PREFIX": f"t{suffix}",
        "LIFECYCLE_CLOCK": "event",
        "LIFECYCLE_PROFILE": "daily_app",
        "LIFECYCLE_WORKER_PORT": "0",
        "LIFECYCLE_SWEEP_INTERVAL": "0.2",
        "LIFECYCLE_SESSION_TIMEOUT": "6",
        **extra,
    }
    settings = Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in env.items()})
    ensure_topics(settings)
    return Stack(env, settings, workdir)
