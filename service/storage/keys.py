"""Every Redis key name of the service. Each carries its partition as a hash tag `{p}`.

A batch commit touches one partition's keys only, so under Redis Cluster it is one slot
and one atomic script. User ids are never part of a key name (they are hash fields and
sorted-set members), so whatever characters they contain cannot break the tag.
"""

from __future__ import annotations


class PartitionKeys:
    """Key names of one partition of the events topic."""

    __slots__ = ("partition", "tag")

    def __init__(self, prefix: str, partition: int) -> None:
        self.partition = partition
        self.tag = f"{prefix}:{{{partition}}}"

    @property
    def meta(self) -> str:
        """Hash: owner generation, applied offset, watermark, sweep clock, last commit time (`at`)."""
        return f"{self.tag}:meta"

    @property
    def users(self) -> str:
        """Hash: user id -> packed `UserRecord`."""
        return f"{self.tag}:users"

    @property
    def counters(self) -> str:
        """Hash: counter name -> integer or float total."""
        return f"{self.tag}:ctr"

    @property
    def cohorts(self) -> str:
        """Hash: cohort sizes and retained users per first-seen day and channel."""
        return f"{self.tag}:cohorts"

    @property
    def funnel_cohorts(self) -> str:
        """Hash: users per named funnel step by entry week and channel (`counters.named_funnel_cohort`)."""
        return f"{self.tag}:fnc"

    @property
    def intervals(self) -> str:
        """Hash: users new, returning, resurrecting, dormant per day, week, month and channel."""
        return f"{self.tag}:lci"

    @property
    def channels(self) -> str:
        """Set: channels that have users in this partition."""
        return f"{self.tag}:channels"

    def active(self, channel: str) -> str:
        """Sorted set: user id scored by last_active, one per channel."""
        return f"{self.tag}:la:{channel}"

    def first(self, channel: str) -> str:
        """Sorted set: user id scored by first_seen, only while inside the new window."""
        return f"{self.tag}:fs:{channel}"

    def rfm(self, fm_class: int) -> str:
        """Sorted set: users of an RFM frequency/monetary class (1..3) scored by last_active."""
        return f"{self.tag}:rfm:{fm_class}"

    @property
    def due(self) -> str:
        """Sorted set: users with pending triggers, scored by the earliest due time."""
        return f"{self.tag}:due"

    @property
    def outbox(self) -> str:
        """Stream: fired triggers (CloudEvents) committed with the state, not yet relayed to Kafka."""
        return f"{self.tag}:outbox"

    @property
    def erased(self) -> str:
        """Set: digests of the erased user ids whose events are dropped (`service.core.erasure`)."""
        return f"{self.tag}:erased"

    def dedup(self, bucket: int) -> str:
        """Set: digests of the event ids whose ts falls in `bucket` (`service.core.dedup`)."""
        return f"{self.tag}:dd:{bucket}"


def history(prefix: str) -> str:
    """Hash: ISO day of the clock -> the day's latest lifecycle counts (orjson), written by APIs.

    Not a partition's key: one small hash read and written whole, in any cluster slot.
    """
    return f"{prefix}:history"


def erasure_log(prefix: str) -> str:
    """Stream: each erase and restore request, with its time and requester, never the id."""
    return f"{prefix}:erasures"


def all_partitions(prefix: str, partitions: int) -> list[PartitionKeys]:
    return [PartitionKeys(prefix, p) for p in range(partitions)]
