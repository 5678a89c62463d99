"""Redis answers with an error instead of going away: the worker pauses as for an outage.

After a failover the old primary says READONLY; at `maxmemory` with `noeviction` every
write says OOM; a long script makes others wait with BUSY; a cluster mid-failover says
CLUSTERDOWN or TRYAGAIN. None of these is solved by restarting the worker, and each
passes with time, so the worker treats them as an outage (`service.worker.outage`):
it pauses, its `/readyz` answers 503, and it resumes on its own. Both cases below run a
real redis-server: a primary demoted to a replica under the worker and promoted back,
and a `maxmemory` lowered under the used memory, then raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from service.dev.redis_server import RedisServer
from tests.faults import test_redis_outage as outage
from tests.faults.test_redis_outage import run_outage
from tests.processes import wait_for
from tests.stack import Stack

pytestmark = pytest.mark.integration

# the outage tests' worker stack on a redis-server of the test's own
own_redis = outage.own_redis
stack = outage.stack
api = outage.api


@pytest.fixture
def standby(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "standby") as server:
        yield server


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10)


def _in_sync(primary: redis.Redis, replica: redis.Redis) -> bool:
    info = replica.info("replication")
    return bool(
        info.get("master_link_status") == "up"
        and info.get("slave_repl_offset") == primary.info("replication")["master_repl_offset"]
    )


async def test_worker_pauses_while_its_redis_is_a_read_only_replica(
    stack: Stack, api: httpx.AsyncClient, own_redis: RedisServer, standby: RedisServer
) -> None:
    primary, other = _client(own_redis), _client(standby)

    def fail_over() -> None:
        """The standby takes every write the primary acknowledged, then becomes the primary;
        the worker's Redis becomes its replica: READONLY to every write."""
        other.replicaof("127.0.0.1", own_redis.port)
        wait_for(lambda: _in_sync(primary, other), 30, "the standby to catch up")
        primary.client_pause(10_000, all=False)  # no write between the last sync and the swap
        wait_for(lambda: _in_sync(primary, other), 30, "the standby to take the last writes")
        other.replicaof("no", "one")
        primary.replicaof("127.0.0.1", standby.port)
        primary.client_unpause()
        wait_for(lambda: _in_sync(other, primary), 30, "the old primary to follow")

    def fail_back() -> None:
        primary.replicaof("no", "one")

    try:
        await run_outage(stack, api, own_redis, fail_over, fail_back, api_unready=False)
    finally:
        primary.close()
        other.close()


async def test_worker_pauses_while_redis_is_out_of_memory(
    stack: Stack, api: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    client = _client(own_redis)

    def fill_up() -> None:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(used // 2))  # every write that may grow memory: OOM

    try:
        await run_outage(
            stack, api, own_redis, fill_up, lambda: client.config_set("maxmemory", "0"), api_unready=False
        )
    finally:
        client.close()
