"""What this worker knows of one events partition, in one place.

Kafka assigns a partition, the worker positions its consumer where Redis says, claims
it in Redis (an owner generation that fences every earlier owner), and from then on
applies its batches one at a time under its lock. A fence or offsets that go back
release the claim (the next batch claims again); a revocation also ends the
positioning. Everything below is that life cycle's state, and nothing else.
"""

from __future__ import annotations

import asyncio
import time


class Partition:
    """One events partition's claim, position and relay state on this worker."""

    __slots__ = (
        "gen",
        "last_offset",
        "lock",
        "new_log",
        "number",
        "positioned",
        "reclaim_at",
        "relay_synced",
    )

    def __init__(self, number: int) -> None:
        self.number = number
        self.lock = asyncio.Lock()  # one batch, sweep, claim or relay of the partition at a time
        self.gen: str | None = None  # our owner generation in Redis; None: not claimed (yet, or again)
        self.last_offset: int | None = None  # the last offset handed to a batch since the claim
        self.new_log = False  # re-based on assignment, and no batch from the new log's offset 0 yet
        self.relay_synced = False  # the relay has read where its predecessor got to
        self.positioned = False  # the consumer starts where Redis says, since the last revocation
        self.reclaim_at = 0.0  # fenced: no claim outside an assignment before this (monotonic) time

    @property
    def claimed(self) -> bool:
        return self.gen is not None

    def release(self) -> None:
        """Forget the claim (fenced, or offsets went back): the next batch claims it anew."""
        self.gen = None
        self.last_offset = None
        self.new_log = False
        self.relay_synced = False

    def fenced(self, hold: float) -> None:
        """Another worker claimed it: forget the claim, and claim back no sooner than `hold`
        seconds from now. A worker that froze past its session still believes the partition
        assigned until its next heartbeat; claiming back at once would fence the rightful
        owner, which would claim again, and the two would trade it until the revocation."""
        self.release()
        self.reclaim_at = time.monotonic() + hold

    def may_reclaim(self) -> bool:
        """True once a fence's hold is over (see `fenced`)."""
        return time.monotonic() >= self.reclaim_at

    def revoke(self) -> None:
        """Kafka took the partition away: no claim, and no position until the next assignment."""
        self.release()
        self.positioned = False
        self.reclaim_at = 0.0  # the next assignment claims at once: that is Kafka's word


class Partitions:
    """This worker's partitions by number; one is made on its first mention and kept.

    Kept, not dropped on revocation: a batch in hand may still hold its lock, and the
    next assignment must wait for that same lock.
    """

    def __init__(self) -> None:
        self._by_number: dict[int, Partition] = {}

    def __getitem__(self, number: int) -> Partition:
        part = self._by_number.get(number)
        if part is None:
            part = self._by_number[number] = Partition(number)
        return part

    def is_positioned(self, number: int) -> bool:
        """Kafka's word on who owns a partition, as this worker last acted on it."""
        part = self._by_number.get(number)
        return part is not None and part.positioned

    def positioned(self) -> list[int]:
        """The partitions positioned since their last revocation, in order."""
        return sorted(n for n, part in self._by_number.items() if part.positioned)
