"""Grouping events into envelopes: one message per partition, of a bounded size.

An envelope carries only users that Kafka's default partitioner maps to the partition
it is written to, so the worker owning that partition owns every user in it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from service.core.partitioning import partition_for


def envelopes(
    items: Iterable[tuple[str, bytes]],
    partitions: int,
    max_events: int = 500,
    cache: dict[str, int] | None = None,
) -> Iterator[tuple[int, bytes, bytes]]:
    """`(partition, key, value)` messages for `(user_id, event JSON)` items, in input order per user.

    The value is a JSON array joined from the events' own bytes (no re-encoding); the
    key is the first event's user id. `cache` (user id -> partition) may be kept by a
    caller across calls: murmur2 in Python costs more than the rest of the grouping.
    """
    buckets: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
    if cache is None:
        cache = {}
    for user_id, raw in items:
        p = cache.get(user_id)
        if p is None:
            p = cache[user_id] = partition_for(user_id, partitions)
        bucket = buckets[p]
        bucket.append((user_id, raw))
        if len(bucket) >= max_events:
            yield _envelope(p, bucket)
            buckets[p] = []
    for p, bucket in buckets.items():
        if bucket:
            yield _envelope(p, bucket)


def _envelope(partition: int, bucket: list[tuple[str, bytes]]) -> tuple[int, bytes, bytes]:
    return partition, bucket[0][0].encode(), join_envelope([raw for _, raw in bucket])


def join_envelope(values: list[bytes]) -> bytes:
    """One JSON array from the JSON objects' own bytes."""
    return b"[" + b",".join(values) + b"]"
