"""One place that turns the settings into a Redis client: a single server or a Redis Cluster.

Every key of a partition carries the hash tag `{p}`, so a batch commit (one Lua script)
touches one slot, and read pipelines fan out over the cluster's nodes by slot.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from service.settings import Settings
from service.store import AnyRedis


def redis_client(settings: Settings, **options: Any) -> AnyRedis:
    """`LIFECYCLE_REDIS_CLUSTER=true`: the URL names any node of the cluster (the others are discovered).

    A password comes in the URL (`redis://:secret@host`, or `user:secret@` with ACLs);
    `rediss://` is TLS, verified against `LIFECYCLE_REDIS_TLS_CA_FILE` when set.
    """
    if settings.redis_tls_ca_file and settings.redis_url.startswith("rediss://"):
        options = {"ssl_ca_certs": settings.redis_tls_ca_file, **options}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    return Redis.from_url(settings.redis_url, **options)
