"""Sorting one partition's batch of messages before anything of it is applied.

A batch is read in two steps around the one Redis read of its snapshot. `decode_batch`
runs first: it decodes the messages and says what the snapshot must hold (the users of
this partition, the de-duplication digests by bucket). `sort_batch` runs on the
snapshot's applied offset and seen digests and puts every message and event in exactly
one class:

- replayed: at or below the applied offset, already applied before a crash or restart;
- dead letter: a message or envelope item that is not a valid canonical event;
- misrouted: a valid event of a user another partition owns (re-routed there);
- duplicate: an event id already seen (in Redis or earlier in the batch);
- fresh: everything else, in offset order: what is applied.

Both are pure: Redis, the broker and the clock stay with the caller.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.core.controls import control_event
from service.core.dedup import event_digest
from service.core.events import Event, Rejected, TimeBounds, decode_message
from service.core.partitioning import partition_for

Message = tuple[int, bytes | None, bytes | None]
"""A consumed Kafka message: (offset, key, value)."""

Bucket = Callable[[int], int]
"""An event time (epoch ms) to its de-duplication bucket."""

DecodedMessage = tuple[int, bytes | None, list[tuple[Event, bytes]], list[Rejected]]
"""(offset, key, events with their digests, rejected items) of one message."""


@dataclass
class Decoded:
    """A batch decoded, and what its snapshot must be read with."""

    messages: list[DecodedMessage]
    owner: dict[str, int]  # user id -> the partition that owns it
    digests: dict[int, list[bytes]]  # bucket -> digests of every event, to ask which are seen

    def users_of(self, partition: int) -> list[str]:
        """The users whose records the snapshot must hold: only the partition's own."""
        return [uid for uid, p in self.owner.items() if p == partition]


@dataclass
class DeadLetter:
    """A message or envelope item that is no valid event, and where it came from."""

    offset: int
    key: bytes | None
    rejected: Rejected


@dataclass
class Sorted:
    """Every message and event of a batch in one class; `last_offset` is what a commit records."""

    last_offset: int
    replayed: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    misrouted: dict[int, list[Event]] = field(default_factory=dict)  # owning partition -> events
    fresh: list[Event] = field(default_factory=list)
    new_digests: dict[int, list[bytes]] = field(default_factory=dict)  # bucket -> digests of `fresh`

    @property
    def rejected(self) -> int:
        return len(self.dead_letters)

    @property
    def misrouted_count(self) -> int:
        return sum(len(evs) for evs in self.misrouted.values())


def decode_batch(messages: Sequence[Message], partitions: int, bounds: TimeBounds, bucket: Bucket) -> Decoded:
    """Decode `(offset, key, value)` messages; never raises (bad input becomes `Rejected`)."""
    decoded: list[DecodedMessage] = []
    owner: dict[str, int] = {}
    digests: dict[int, list[bytes]] = defaultdict(list)
    for offset, key, value in messages:
        events, rejected = decode_message(value, bounds, control_event)
        items = []
        for ev in events:
            digest = event_digest(ev.event_id)
            items.append((ev, digest))
            if ev.user_id not in owner:
                owner[ev.user_id] = partition_for(ev.user_id, partitions)
            digests[bucket(ev.ts)].append(digest)
        decoded.append((offset, key, items, rejected))
    return Decoded(decoded, owner, digests)


def sort_batch(
    batch: Decoded, partition: int, applied_offset: int, seen: set[bytes], bucket: Bucket
) -> Sorted:
    """Put each message of `batch` (read for `partition`) in its class; see the module's doc.

    `seen` holds the digests Redis already has; it is not changed. An event id seen
    earlier in the same batch is a duplicate too, so a producer's retry inside one batch
    is applied once.
    """
    taken = set(seen)
    out = Sorted(applied_offset)
    misrouted: dict[int, list[Event]] = defaultdict(list)
    new_digests: dict[int, list[bytes]] = defaultdict(list)
    fresh = out.fresh
    owner = batch.owner
    last_offset = applied_offset
    for offset, key, items, rejected in batch.messages:
        if offset <= applied_offset:
            out.replayed += len(items) + len(rejected)
            continue
        if offset > last_offset:
            last_offset = offset
        for bad in rejected:
            out.dead_letters.append(DeadLetter(offset, key, bad))
        for ev, digest in items:
            target = owner[ev.user_id]
            if target != partition:
                misrouted[target].append(ev)
            elif digest in taken:
                out.duplicates += 1
            else:
                taken.add(digest)
                new_digests[bucket(ev.ts)].append(digest)
                fresh.append(ev)
    out.last_offset = last_offset
    out.misrouted = misrouted
    out.new_digests = new_digests
    return out
