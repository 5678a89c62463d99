"""Scale-out for real: a three-master Redis Cluster, and three workers on twelve partitions.

The cluster run must give what the reference gives, with every partition's keys in one
slot and the partitions spread over the masters. The multi-worker run consumes the same
topic as a single worker (another consumer group, other keys) while one of the three is
killed and restarted, and must end with every counter, record and trigger identical.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.api.app import create_api
from service.core import counters as ctr
from service.dev.redis_server import RedisClusterNodes
from service.settings import Settings
from service.storage.client import discover, redis_client
from service.storage.keys import all_partitions
from service.storage.queries import Queries
from tests.processes import ServiceProcess, applied_offsets, sync_redis
from tests.stack import (
    Stack,
    assert_matches_reference,
    assert_transitions_match,
    history,
    make_stack,
    read_counters,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"), masters=3) as nodes:
        yield nodes


def outbox_drained(stack: Stack) -> bool:
    client = sync_redis(stack.settings.redis_url, stack.settings.redis_cluster)
    try:
        return all(
            client.xlen(k.outbox) == 0 for k in all_partitions(stack.settings.key_prefix, stack.partitions)
        )
    finally:
        client.close()


async def test_the_service_runs_unchanged_on_a_redis_cluster(
    broker: Any, cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    stack = make_stack(broker, cluster.url, tmp_path, partitions=6, LIFECYCLE_REDIS_CLUSTER="true")
    events = history(users=300)
    stack.publish(events)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        app = create_api(stack.settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            await assert_matches_reference(api, events, stack.settings.loaded_profile)
            await assert_transitions_match(stack, worker, events)
            summary = (await api.get("/triggers/summary")).json()
            assert sum(t["sent"] + t["held_out"] for t in summary["triggers"]) > 0
        await _wait(lambda: outbox_drained(stack), "the outbox relayed from the cluster")
    finally:
        worker.stop()

    # every key of a partition in one slot; the partitions spread over the three masters
    owners: set[int] = set()
    client = redis.RedisCluster.from_url(cluster.url)
    try:
        for k in all_partitions(stack.settings.key_prefix, stack.partitions):
            keys = [k.meta, k.users, k.counters, k.cohorts, k.channels, k.due, k.outbox, k.active("ads")]
            slots = {client.keyslot(key) for key in keys}
            assert len(slots) == 1, (k.partition, slots)
            owners.add(client.nodes_manager.get_node_from_slot(slots.pop()).port)
    finally:
        client.close()
    assert owners == {node.port for node in cluster.nodes}


async def test_three_workers_on_twelve_partitions_equal_one_worker(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    one = make_stack(broker, redis_url, tmp_path / "one", partitions=12)
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    # the same topic, read by a second consumer group writing under other keys
    three = make_stack(
        broker,
        redis_url,
        tmp_path / "three",
        partitions=12,
        LIFECYCLE_EVENTS_TOPIC=one.settings.events_topic,
        LIFECYCLE_DLQ_TOPIC=one.settings.dlq_topic,
    )
    events = history(users=400)
    half = len(events) // 2
    single = one.worker()
    workers = [
        ServiceProcess("worker", three.env, three.workdir / f"worker{i}.log").start() for i in range(3)
    ]
    try:
        one.publish(events[:half])
        three.published = dict(one.published)
        await asyncio.sleep(3)
        workers[1].kill()  # its partitions move to the other two, then back when it restarts
        one.publish(events[half:])
        three.published = dict(one.published)
        workers[1] = ServiceProcess("worker", three.env, three.workdir / "worker1b.log").start()
        one.wait_applied(single, timeout=180)
        three.wait_applied(workers[0], timeout=180)
        one.wait_swept(single)
        three.wait_swept(workers[0])
        await _wait(lambda: outbox_drained(one) and outbox_drained(three), "both outboxes relayed")
        for w in workers:
            assert w.alive(), w.log_tail()
    finally:
        single.stop()
        for w in workers:
            w.stop()

    # integers exactly; summed amounts up to float addition order
    got, want = await read_counters(three), await read_counters(one)
    assert got.keys() == want.keys()
    assert {k: v for k, v in got.items() if isinstance(v, int)} == {
        k: v for k, v in want.items() if isinstance(v, int)
    }
    assert got == {k: pytest.approx(v, rel=1e-12) for k, v in want.items()}
    client = redis.Redis.from_url(redis_url)
    try:
        for a, b in zip(
            all_partitions(one.settings.key_prefix, 12),
            all_partitions(three.settings.key_prefix, 12),
            strict=True,
        ):
            assert client.hgetall(a.users) == client.hgetall(b.users), a.partition
            assert client.zrange(a.due, 0, -1, withscores=True) == client.zrange(
                b.due, 0, -1, withscores=True
            )
    finally:
        client.close()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(three.settings)), base_url="http://api"
    ) as api:
        await assert_matches_reference(api, events, three.settings.loaded_profile)


async def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_discovered_cluster_client_answers_a_burst_of_first_reads(cluster: RedisClusterNodes) -> None:
    """200 concurrent reads as the first commands of a fresh client, 40 times: none fails.

    redis-py's asyncio RedisCluster (8.1.0) can fail commands that race its first topology
    discovery (AttributeError: 'NoneType' object has no attribute 'writelines'), so the API
    calls `discover` at start-up, before it serves. Without it this test fails in about
    one run in two (a round in ten or twenty). Sixteen partitions, so the reads reach every
    master, the one first named included.
    """
    settings = Settings(redis_url=cluster.url, redis_cluster=True, partitions=16)
    failures: list[str] = []
    for _ in range(40):
        client = redis_client(settings, socket_timeout=5, socket_connect_timeout=2)
        try:
            await discover(client)
            queries = Queries(client, "burst", 16, settings.loaded_profile, settings.clock)
            replies = await asyncio.gather(
                *(queries.user(f"user-{i}") for i in range(200)), return_exceptions=True
            )
            failures += [repr(r) for r in replies if r is not None]
        finally:
            await client.aclose()
    assert not failures, failures[:3]


async def test_a_second_worker_joining_mid_backlog_loses_nothing(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    """A backlog in large batches, and a second worker joins while the first applies it.

    Batches the first worker's stream had already taken when the rebalance began come out
    after it, under the new assignment: applying them would skip whatever lay between the
    partition's start (Redis's applied offset) and their first offset. They belong to the
    earlier generation and are re-read from Redis's position instead.
    """
    stack = make_stack(broker, redis_url, tmp_path, partitions=8)
    # 57,000 events, one per message: slow to apply, so the backlog is still there when the
    # second worker joins (about a third of it applied then, on Tansu and on Apache Kafka)
    events = history(users=3000)
    stack.publish(events, single=True)
    first = stack.worker()
    second: ServiceProcess | None = None
    try:
        await _wait(lambda: _applied_messages(stack) > 0, "the first worker's first commit")
        second = ServiceProcess("worker", stack.env, stack.workdir / "worker2.log").start()
        stack.wait_applied(first, timeout=180)
        # the case at hand: the second worker took partitions over before their backlog was applied
        taken = _first_assignment(stack.workdir / "worker2.log")
        assert any(start <= stack.published[p] for p, start in taken.items()), (
            f"the second worker did not join mid-backlog: it started at {taken}, the last offsets "
            f"are {stack.published}"
        )
        counters = await read_counters(stack)
        distinct = len({e["event_id"] for e in events})
        assert counters[ctr.APPLIED] + counters.get(ctr.UNKNOWN_USER, 0) == distinct
        app = create_api(stack.settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            await assert_matches_reference(api, events, stack.settings.loaded_profile)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def _applied_messages(stack: Stack) -> int:
    offsets = applied_offsets(stack.settings.redis_url, stack.settings.key_prefix, stack.partitions)
    return sum(o + 1 for o in offsets.values())


def _first_assignment(log: Path) -> dict[int, int]:
    """The offsets a worker started its first partitions at, from its log ({} before any)."""
    found = re.search(r"assigned partitions start at \{([^}]*)\}", log.read_text(errors="replace"))
    return {int(p): int(o) for p, o in re.findall(r"(\d+): (-?\d+)", found.group(1))} if found else {}
