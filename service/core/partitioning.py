"""Kafka's default partitioner (murmur2 of the key), as the Java client and kafka-python compute it.

One worker owns each user only if every producer, the worker and the API agree on the
user's partition, so this is the single definition all of them use.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (hash initial value 0x9747b28c), as the signed 32-bit int Java returns."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by `user_id`."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
