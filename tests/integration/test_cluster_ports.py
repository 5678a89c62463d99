"""A local Redis Cluster starts even where ports are busy: the determinism CI relies on.

A cluster node listens on its port and on its bus port (port + 10000). Ports handed out
by the kernel for outgoing connections and for every other test server (`free_port`)
come from the ephemeral range, so a node's two ports must both lie below it, and a
start that still finds one taken moves the node to another free pair.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from service.dev.processes import free_cluster_port
from service.dev.redis_server import RedisClusterNodes

pytestmark = pytest.mark.integration


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_cluster_ports_and_their_bus_ports_lie_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = free_cluster_port()
        assert port + 10_000 < low, (port, low)
        assert port >= 1024


def test_a_node_whose_bus_port_was_taken_moves_to_a_free_pair(tmp_path: Path) -> None:
    cluster = RedisClusterNodes(tmp_path, masters=3)
    taken = cluster.nodes[1].port
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", taken + 10_000))  # someone else took the bus port meanwhile
    squatter.listen()
    try:
        with cluster:
            assert cluster.nodes[1].port != taken
            client = redis.RedisCluster.from_url(cluster.url)
            try:
                client.set("k", "v")
                assert client.get("k") == b"v"
            finally:
                client.close()
    finally:
        squatter.close()
