"""One place that turns the settings into a Redis client: a single server or a Redis Cluster.

Every key of a partition carries the hash tag `{p}`, so a batch commit (one Lua script)
touches one slot, and read pipelines fan out over the cluster's nodes by slot.
"""

from __future__ import annotations

import logging
from typing import Any

import hiredis
from redis.asyncio import Connection, Redis, SSLConnection
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError, RedisError

from service.settings import Settings

log = logging.getLogger(__name__)

AnyRedis = Redis | RedisCluster


def as_text(value: Any) -> str:
    """A Redis reply (bytes, str, number or None) as text."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


class _HiredisPacking:
    """Commands packed by hiredis in C: redis-py's asyncio connection packs them in Python,
    which was a tenth of a backfilling worker's CPU (a batch commit has thousands of
    arguments). The same bytes: hiredis takes what redis-py's encoder takes (bytes, str,
    int, float) and refuses the rest, like it, with a `DataError`."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"a command argument redis cannot take: {exc}") from exc


class PackingConnection(_HiredisPacking, Connection):
    pass


class PackingSSLConnection(_HiredisPacking, SSLConnection):
    pass


def redis_client(settings: Settings, **options: Any) -> AnyRedis:
    """`LIFECYCLE_REDIS_CLUSTER=true`: the URL names any node of the cluster (the others are discovered).

    A password comes in the URL (`redis://:secret@host`, or `user:secret@` with ACLs);
    `rediss://` is TLS, verified against `LIFECYCLE_REDIS_TLS_CA_FILE` when set.
    """
    if settings.redis_tls_ca_file and settings.redis_url.startswith("rediss://"):
        options = {"ssl_ca_certs": settings.redis_tls_ca_file, **options}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    scheme = settings.redis_url.split("://", 1)[0]
    packing = {"redis": PackingConnection, "rediss": PackingSSLConnection}.get(scheme)
    if packing is not None:
        options = {"connection_class": packing, **options}
    return Redis.from_url(settings.redis_url, **options)


async def discover(client: AnyRedis) -> None:
    """Learn a Redis Cluster's topology before serving concurrent requests.

    redis-py's asyncio RedisCluster (8.1.0) drops the startup node it was given once it
    has discovered the cluster, disconnecting that node's free connections in a
    background task; a command that took one of them meanwhile fails with
    `AttributeError: 'NoneType' object has no attribute 'writelines'` (measured: 1 round
    in 10 of 200 concurrent first reads; none when discovered first). Redis unavailable
    here is not fatal: the first request discovers it, and `/readyz` reports the outage.
    """
    if not isinstance(client, RedisCluster):
        return
    try:
        await client.initialize()
    except (RedisError, OSError) as exc:
        log.warning("Redis Cluster topology not discovered at start-up: %s", exc)
