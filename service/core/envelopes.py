"""Grouping events into envelopes: one message per partition, bounded in events and bytes.

An envelope carries only users that Kafka's default partitioner maps to the partition
it is written to, so the worker owning that partition owns every user in it. Its bytes
stay under a limit below the broker's `max.message.bytes` (1 MiB by default on Apache
Kafka): a message over it is refused by the broker, and retrying never helps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from service.core.partitioning import partition_for

ENVELOPE_MAX_BYTES = 900 * 1024  # room under the broker's default 1 MiB for headers and framing
TOO_LARGE_KEEP_BYTES = 64 * 1024  # what a dead letter keeps of a message too large to forward


def envelope_size(values: Iterable[bytes]) -> int:
    """Bytes of the JSON array `join_envelope` makes of `values`."""
    n = total = 0
    for value in values:
        n += 1
        total += len(value)
    return total + max(n - 1, 0) + 2


def envelopes(
    items: Iterable[tuple[str, bytes]],
    partitions: int,
    max_events: int = 500,
    cache: dict[str, int] | None = None,
    max_bytes: int = ENVELOPE_MAX_BYTES,
) -> Iterator[tuple[int, bytes, bytes]]:
    """`(partition, key, value)` messages for `(user_id, event JSON)` items, in input order per user.

    An envelope holds at most `max_events` events and `max_bytes` bytes; an event bigger
    than `max_bytes` on its own goes alone (callers refuse such events first). The value is
    a JSON array joined from the events' own bytes (no re-encoding); the key is the first
    event's user id. `cache` (user id -> partition) may be kept by a caller across calls:
    murmur2 in Python costs more than the rest of the grouping.
    """
    buckets: dict[int, list[tuple[str, bytes]]] = {}
    sizes: dict[int, int] = {}  # bytes of each bucket's array so far
    if cache is None:
        cache = {}
    for user_id, raw in items:
        p = cache.get(user_id)
        if p is None:
            p = cache[user_id] = partition_for(user_id, partitions)
        bucket = buckets.get(p)
        if bucket is None:
            bucket = buckets[p] = []
            sizes[p] = 1
        if bucket and sizes[p] + 1 + len(raw) > max_bytes:
            yield _envelope(p, bucket)
            bucket = buckets[p] = []
            sizes[p] = 1
        bucket.append((user_id, raw))
        sizes[p] += len(raw) + 1  # the value and its comma (or the closing bracket)
        if len(bucket) >= max_events:
            yield _envelope(p, bucket)
            buckets[p] = []
            sizes[p] = 1
    for p, bucket in buckets.items():
        if bucket:
            yield _envelope(p, bucket)


def split_values(
    values: list[bytes], max_events: int, max_bytes: int = ENVELOPE_MAX_BYTES
) -> Iterator[list[bytes]]:
    """`values` in order, cut into runs whose envelope has at most `max_events` events and
    `max_bytes` bytes (a value over `max_bytes` alone forms a run of one)."""
    run: list[bytes] = []
    size = 1
    for value in values:
        if run and (len(run) >= max_events or size + 1 + len(value) > max_bytes):
            yield run
            run = []
            size = 1
        run.append(value)
        size += len(value) + 1
    if run:
        yield run


def _envelope(partition: int, bucket: list[tuple[str, bytes]]) -> tuple[int, bytes, bytes]:
    return partition, bucket[0][0].encode(), join_envelope([raw for _, raw in bucket])


def join_envelope(values: list[bytes]) -> bytes:
    """One JSON array from the JSON objects' own bytes."""
    return b"[" + b",".join(values) + b"]"
