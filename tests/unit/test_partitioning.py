"""Kafka's default partitioner: every producer, worker and the API must agree on a user's partition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_murmur2

from service.core.partitioning import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints)
JAVA_VECTORS = [
    (b"21", -973_932_308),
    (b"foobar", -790_332_482),
    (b"a-little-bit-long-string", -985_981_536),
    (b"a-little-bit-longer-string", -1_486_304_829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
    (b"abc", 479_470_107),
]

# kafka-python's Java compatibility cases: partition of the key among 1000 partitions
JAVA_PARTITIONS = [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)]


@pytest.mark.parametrize(("data", "want"), JAVA_VECTORS)
def test_murmur2_is_javas(data: bytes, want: int) -> None:
    assert murmur2(data) == want


@pytest.mark.parametrize(("key", "partition"), JAVA_PARTITIONS)
def test_partitions_are_javas(key: bytes, partition: int) -> None:
    assert (murmur2(key) & 0x7FFFFFFF) % 1000 == partition
    assert partition_for(key.decode(), 1000) == partition


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_agrees_with_kafka_python(data: bytes) -> None:
    ours = murmur2(data)
    assert -(2**31) <= ours < 2**31  # a signed 32-bit int, as Java returns it
    assert ours & 0xFFFFFFFF == kafka_murmur2(data) & 0xFFFFFFFF


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    st.integers(1, 1024),
)
def test_partition_for_agrees_with_kafkas_default_partitioner(user_id: str, partitions: int) -> None:
    want = (kafka_murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
    got = partition_for(user_id, partitions)
    assert got == want
    assert 0 <= got < partitions


@pytest.mark.parametrize("user_id", ["user-42", "ü", "用户一号", "🙂🙃", "a" * 128, ""])
def test_non_ascii_user_ids_are_hashed_as_utf8(user_id: str) -> None:
    for partitions in (1, 3, 12, 64):
        assert (
            partition_for(user_id, partitions) == (kafka_murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
        )


def test_one_partition_takes_everyone() -> None:
    assert {partition_for(f"u{i}", 1) for i in range(100)} == {0}


def test_users_spread_over_partitions() -> None:
    seen = {partition_for(f"user-{i}", 12) for i in range(1000)}
    assert seen == set(range(12))
