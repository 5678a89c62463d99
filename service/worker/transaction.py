"""One batch of one partition as a transaction: snapshot, prepare, commit, with one fence.

Shaped like a stream processor's partition transaction: it is `started` when the
snapshot is read, `prepared` once the batch's result and its last offset are in hand,
and `complete` when Redis has committed both together in one script, or `failed`.
Result and offset are never written apart, so a batch is applied exactly once or not
at all, and a replay after a crash is recognised by the offset alone.

The fence is one rule: our owner generation must still be the partition's. It is
checked here against every meta this worker reads (`check_fence`), and again by the
commit script itself, atomically with the write.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.core.batch_state import BatchResult
from service.storage.store import FencedError, Meta, OutboxEntry, RedisStore, Snapshot


def check_fence(meta: Meta, gen: str) -> None:
    """Raise `FencedError` unless `gen` is still the partition's owner generation in `meta`."""
    if meta.gen != gen:
        raise FencedError(f"owner generation is {meta.gen!r}, ours is {gen!r}")


class Status(enum.Enum):
    STARTED = "started"
    PREPARED = "prepared"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _Prepared:
    result: BatchResult
    offset: int
    new_digests: Mapping[int, list[bytes]]
    swept: int | None
    extra_counts: Mapping[str, int]
    outbox: Sequence[OutboxEntry]
    committed_at: int


class BatchTransaction:
    """A batch from its snapshot to its commit, under owner generation `gen`."""

    __slots__ = ("_prepared", "gen", "partition", "snapshot", "status", "store")

    def __init__(self, store: RedisStore, partition: int, gen: str) -> None:
        self.store = store
        self.partition = partition
        self.gen = gen
        self.status = Status.STARTED
        self.snapshot: Snapshot | None = None
        self._prepared: _Prepared | None = None

    async def begin(self, users: Iterable[str], digests: Mapping[int, list[bytes]]) -> Snapshot:
        """Read the snapshot the batch applies to; fails when another owner has the partition."""
        try:
            snap = await self.store.load(self.partition, users, digests)
            check_fence(snap.meta, self.gen)
        except BaseException:
            self.status = Status.FAILED
            raise
        self.snapshot = snap
        return snap

    def prepare(
        self,
        result: BatchResult,
        *,
        offset: int,
        new_digests: Mapping[int, list[bytes]],
        swept: int | None,
        extra_counts: Mapping[str, int],
        outbox: Sequence[OutboxEntry],
        committed_at: int,
    ) -> None:
        """Hold the batch's result with the offset it brings the partition to."""
        if self.status is not Status.STARTED or self.snapshot is None:
            raise RuntimeError(f"partition {self.partition}: prepare in status {self.status.value}")
        self._prepared = _Prepared(result, offset, new_digests, swept, extra_counts, outbox, committed_at)
        self.status = Status.PREPARED

    def complete_unchanged(self) -> None:
        """Nothing to write: every message was at or below the applied offset (a replay)."""
        if self.status is not Status.STARTED:
            raise RuntimeError(f"partition {self.partition}: complete in status {self.status.value}")
        self.status = Status.COMPLETE

    async def commit(self) -> None:
        """Write result and offset together; the script re-checks the fence and the position."""
        p = self._prepared
        if self.status is not Status.PREPARED or self.snapshot is None or p is None:
            raise RuntimeError(f"partition {self.partition}: commit in status {self.status.value}")
        try:
            await self.store.commit_batch(
                self.partition,
                self.snapshot.meta,
                p.result,
                offset=p.offset,
                new_digests=p.new_digests,
                swept=p.swept,
                extra_counts=p.extra_counts,
                outbox=p.outbox,
                committed_at=p.committed_at,
            )
        except BaseException:
            self.status = Status.FAILED
            raise
        self.status = Status.COMPLETE
