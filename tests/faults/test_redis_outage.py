"""Redis goes away mid-stream and comes back: the worker pauses, says so, and resumes exactly.

Two outages, each on a redis-server of the test's own (the session's has no persistence):

- **crash**: `kill -9`, then a new redis-server on the same port and directory. The data
  set is the same because the server runs with AOF and `appendfsync always`: every write
  Redis acknowledged is on disk before the reply, so whatever the worker saw committed
  survives. Connections are refused meanwhile: the fast-failing path.
- **freeze**: SIGSTOP, then SIGCONT: the same process, so trivially the same data. The
  kernel still accepts connections, but nothing answers: the worker only notices through
  its socket timeout (`LIFECYCLE_REDIS_TIMEOUT`), the hanging path.

During the outage: the worker process stays the same (no crash loop), uses next to no
CPU (no busy loop), commits no Kafka offset past what Redis acknowledged, reports the
pause (gauge, its `/readyz`, one warning), and the API's `/readyz` answers 503. After
it: both are ready again without help and the state equals `tests.reference`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient

from service.api.app import create_api
from service.core import counters as ctr
from service.dev.processes import free_port
from service.dev.redis_server import RedisServer
from tests.faults.scale import full
from tests.processes import applied_offsets, wait_for
from tests.stack import (
    Stack,
    assert_matches_reference,
    assert_transitions_match,
    history,
    make_stack,
    read_counters,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0 if full() else 6.0
USERS = 2000 if full() else 300
CLK_TCK = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", appendonly=True) as server:
        yield server


@pytest.fixture
def stack(broker: Any, own_redis: RedisServer, tmp_path: Path) -> Stack:
    return make_stack(
        broker, own_redis.url, tmp_path, LIFECYCLE_REDIS_TIMEOUT="2", LIFECYCLE_WORKER_PORT=str(free_port())
    )


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_offsets(stack: Stack) -> dict[int, int]:
    """The consumer group's committed offsets of the events topic (next offset to read)."""
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    try:
        group = stack.settings.app_id
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {
        tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == stack.settings.events_topic
    }


def worker_get(stack: Stack, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{stack.env['LIFECYCLE_WORKER_PORT']}{path}", timeout=5)


def gauge(stack: Stack, name: str) -> float:
    for line in worker_get(stack, "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the worker's metrics")


async def run_outage(
    stack: Stack,
    api: httpx.AsyncClient,
    redis: RedisServer,
    stop: Any,
    resume: Any,
    *,
    api_unready: bool = True,
) -> dict[str, float]:
    """`stop` makes Redis refuse the worker's commits until `resume`. `api_unready`: the
    API's readiness check (a PING) fails too; a Redis that still answers reads keeps it."""
    events = history(USERS)
    half = len(events) // 2
    stack.publish(events[:half])
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        assert (await api.get("/readyz")).status_code == 200
        wait_for(lambda: worker_get(stack, "/readyz").status_code == 200, 30, "worker ready", worker)
        before = applied_offsets(redis.url, stack.settings.key_prefix, stack.partitions)
        wait_for(  # Faust commits acknowledged batches every second
            lambda: group_offsets(stack) == {p: o + 1 for p, o in before.items()}, 30, "group offsets", worker
        )
        assert worker.proc is not None
        pid = worker.proc.pid

        stop()
        stack.publish(events[half:])  # arrives while Redis is away: the worker must hold it
        wait_for(lambda: gauge(stack, "lifecycle_redis_unavailable") == 1, 30, "the pause gauge", worker)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        if api_unready:
            ready = await api.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["redis"] != "ok"
        assert worker_get(stack, "/readyz").status_code == 503
        while time.monotonic() - t0 < OUTAGE_S:
            assert worker.alive(), worker.log_tail()
            # nothing past what Redis acknowledged is committed to Kafka
            assert all(o <= before[p] + 1 for p, o in group_offsets(stack).items())
            await asyncio.sleep(1)
        cpu_share = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        assert cpu_share < 0.15, f"the paused worker used {cpu_share:.0%} of a core"

        resume()
        stack.wait_applied(worker)
        assert worker.proc.pid == pid and worker.alive()  # same process throughout: no crash loop
        assert gauge(stack, "lifecycle_redis_unavailable") == 0
        assert worker_get(stack, "/readyz").status_code == 200
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
        await assert_matches_reference(api, events, stack.settings.loaded_profile)
        await assert_transitions_match(stack, worker, events)
        counters = await read_counters(stack)
        distinct = len({e["event_id"] for e in events})
        assert counters[ctr.APPLIED] + counters.get(ctr.UNKNOWN_USER, 0) == distinct  # each once
        assert not counters.get(ctr.LOG_REBASED)
        wait_for(
            lambda: all(
                o == applied_offsets(redis.url, stack.settings.key_prefix, stack.partitions)[p] + 1
                for p, o in group_offsets(stack).items()
            ),
            30,
            "group offsets after the outage",
            worker,
        )
        log = worker.log_path.read_text()
        assert log.count("Redis unavailable (") == 1, "one warning when the pause starts"
        assert "Redis available again after" in log
        assert "exiting" not in log
        return {"cpu_share": cpu_share}
    finally:
        worker.stop()


async def test_worker_pauses_through_a_redis_crash_and_resumes_on_the_same_data(
    stack: Stack, api: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    figures = await run_outage(stack, api, own_redis, own_redis.kill, own_redis.start)
    print(f"\nRedis killed for {OUTAGE_S:.0f}s: worker CPU {figures['cpu_share']:.1%} of a core")


async def test_worker_rides_out_a_frozen_redis(
    stack: Stack, api: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    assert own_redis.pid is not None
    pid = own_redis.pid
    try:
        figures = await run_outage(
            stack,
            api,
            own_redis,
            lambda: os.kill(pid, signal.SIGSTOP),
            lambda: os.kill(pid, signal.SIGCONT),
        )
    finally:
        os.kill(pid, signal.SIGCONT)  # never leave a stopped server behind
    print(f"\nRedis stopped (SIGSTOP) for {OUTAGE_S:.0f}s: worker CPU {figures['cpu_share']:.1%} of a core")
