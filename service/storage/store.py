"""The worker's Redis adapter: read a batch's state in one round trip, commit it in one.

`load` fetches the partition meta, the batch's user records and which of its event
ids were already seen, pipelined. `commit` turns a `BatchResult` into one fenced call of
the commit script. The sweep of time-driven transitions uses the same commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from service.core import counters as ctr
from service.core.batch import SweepResult
from service.core.batch_state import BatchResult
from service.core.dedup import bucket_ttl_s
from service.core.erasure import suppression_digest
from service.core.identity import merged_into, tombstone
from service.core.lifecycle import Thresholds, change_offsets
from service.core.records import UserRecord
from service.storage.client import AnyRedis, as_text
from service.storage.keys import PartitionKeys
from service.storage.scripts import COMMIT, MAX_ARGS_PER_CALL


class OutboxEntry(NamedTuple):
    """A fired trigger to add to the partition's outbox with the batch's commit."""

    trigger_id: str
    user_id: str
    cloudevent: bytes  # the CloudEvent JSON published to the triggers topic


class OutboxItem(NamedTuple):
    """An entry as read back from the outbox stream, for the relay."""

    stream_id: str  # its position in the stream: what the relay trims up to
    user_id: str
    cloudevent: bytes


META_FIELDS = ("gen", "offset", "swept", "wm", "log")


class StoreError(RuntimeError):
    """Base of the store's errors."""


class FencedError(StoreError):
    """Another worker claimed the partition (a newer owner generation): stop writing to it."""


class ConflictError(StoreError):
    """The partition changed between read and commit; re-read and retry."""


@dataclass(frozen=True, slots=True)
class Meta:
    """The partition's committed position, as read (raw strings kept for the fence check)."""

    gen: str
    offset: str
    swept: str
    wm: str
    log: str  # the events topic's id the applied offset refers to ("" before it was first recorded)

    @property
    def applied_offset(self) -> int:
        return int(self.offset) if self.offset else -1

    @property
    def swept_ms(self) -> int | None:
        return int(self.swept) if self.swept else None

    @property
    def watermark(self) -> int | None:
        return int(self.wm) if self.wm else None

    def checks(self) -> list[str]:
        return ["gen", self.gen, "offset", self.offset, "swept", self.swept]


@dataclass(slots=True)
class Snapshot:
    meta: Meta
    records: dict[str, UserRecord | None]
    seen: set[bytes]
    channels: set[str] = field(default_factory=set)  # the partition's channels so far
    suppressed: set[str] = field(default_factory=set)  # the batch's users on the suppression list
    merged_into: dict[str, str] = field(default_factory=dict)  # the batch's ids merged into another


class CommitBuilder:
    """Collects writes as `(command, key, args)` and renders the script's KEYS/ARGV."""

    def __init__(self, keys: PartitionKeys) -> None:
        self._keys: list[str] = [keys.meta]
        self._index: dict[str, int] = {keys.meta: 1}
        self._ops: list[Any] = []

    def add(self, command: str, key: str, args: list[Any]) -> None:
        if not args:
            return
        idx = self._index.get(key)
        if idx is None:
            self._keys.append(key)
            idx = self._index[key] = len(self._keys)
        for start in range(0, len(args), MAX_ARGS_PER_CALL):
            chunk = args[start : start + MAX_ARGS_PER_CALL]
            self._ops.extend((command, idx, len(chunk)))
            self._ops.extend(chunk)

    def render(self, checks: list[str]) -> tuple[list[str], list[Any]]:
        return self._keys, [len(checks) // 2, *checks, *self._ops]


class RedisStore:
    """Write side of one worker: claims partitions, loads and commits batches, sweeps."""

    def __init__(self, redis: AnyRedis, prefix: str, dedup_window_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.dedup_ttl_s = bucket_ttl_s(dedup_window_s)
        self._commit = redis.register_script(COMMIT)

    def keys(self, partition: int) -> PartitionKeys:
        return PartitionKeys(self.prefix, partition)

    async def probe_write(self) -> None:
        """One small write, to tell whether Redis takes writes again (raises if not)."""
        await self.redis.set(f"{self.prefix}:write-probe", b"1", ex=60)

    async def claim(self, partition: int) -> str:
        """Become the partition's owner: a new generation fences every previous owner."""
        gen = await self.redis.hincrby(self.keys(partition).meta, "gen", 1)
        return str(gen)

    async def meta(self, partition: int) -> Meta:
        return Meta(*(as_text(v) for v in await self.redis.hmget(self.keys(partition).meta, META_FIELDS)))

    async def set_log(self, partition: int, meta: Meta, log_id: str, *, rebase: bool) -> None:
        """Record which log (topic id) the applied offset refers to; `rebase` also resets the
        offset, because the partition's offsets now number a different log, and counts it."""
        k = self.keys(partition)
        b = CommitBuilder(k)
        b.add("HSET", k.meta, ["log", log_id, *(["offset", -1] if rebase else [])])
        if rebase:
            b.add("HINCRBY", k.counters, [ctr.LOG_REBASED, 1])
        await self._run(b, meta)

    async def load(
        self, partition: int, user_ids: Iterable[str], digests_by_day: Mapping[int, list[bytes]]
    ) -> Snapshot:
        k = self.keys(partition)
        uids = list(user_ids)
        days = list(digests_by_day.items())
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k.meta, META_FIELDS)
        pipe.smembers(k.channels)
        if uids:
            pipe.hmget(k.users, uids)
            pipe.smismember(k.erased, [suppression_digest(u) for u in uids])
        for bucket, digests in days:
            pipe.smismember(k.dedup(bucket), digests)
        replies = await pipe.execute()
        meta = Meta(*(as_text(v) for v in replies[0]))
        channels = {as_text(c) for c in replies[1]}
        records: dict[str, UserRecord | None] = {}
        tombstones: dict[str, str] = {}
        suppressed: set[str] = set()
        if uids:
            for uid, raw in zip(uids, replies[2], strict=True):
                target = merged_into(raw) if raw is not None else None
                if target is not None:
                    tombstones[uid] = target
                    raw = None
                records[uid] = UserRecord.unpack(raw) if raw is not None else None
            suppressed = {uid for uid, hit in zip(uids, replies[3], strict=True) if hit}
        seen: set[bytes] = set()
        for (_, digests), flags in zip(days, replies[2 + 2 * bool(uids) :], strict=True):
            seen.update(d for d, hit in zip(digests, flags, strict=True) if hit)
        return Snapshot(meta, records, seen, channels, suppressed, tombstones)

    async def commit_batch(
        self,
        partition: int,
        meta: Meta,
        result: BatchResult,
        *,
        offset: int,
        new_digests: Mapping[int, list[bytes]],
        swept: int | None,
        extra_counts: Mapping[str, int] | None = None,
        outbox: Sequence[OutboxEntry] = (),
        committed_at: int | None = None,
    ) -> None:
        k = self.keys(partition)
        b = CommitBuilder(k)
        users: list[Any] = []
        for uid, rec in result.records.items():
            users += (uid, rec.pack())
        b.add("HSET", k.users, users)
        b.add("HDEL", k.users, sorted(result.deleted))
        tombs: list[Any] = []
        for uid, into in result.tombstones.items():
            tombs += (uid, tombstone(into))
        b.add("HSET", k.users, tombs)  # after the HDEL: a merged user's record becomes its tombstone
        b.add("SREM", k.erased, [suppression_digest(u) for u in sorted(result.unsuppress)])
        b.add("SADD", k.erased, [suppression_digest(u) for u in sorted(result.suppress)])
        for channel, members in result.index_removals.items():
            b.add("ZREM", k.active(channel), list(members))
            b.add("ZREM", k.first(channel), list(members))
        for channel, scores in result.active_index.items():
            b.add("ZADD", k.active(channel), _score_pairs(scores))
        for channel, members in result.first_removals.items():
            b.add("ZREM", k.first(channel), list(members))
        for channel, scores in result.first_index.items():
            b.add("ZADD", k.first(channel), _score_pairs(scores))
        for fm_class, members in result.rfm_removals.items():
            b.add("ZREM", k.rfm(fm_class), list(members))
        for fm_class, scores in result.rfm_index.items():
            b.add("ZADD", k.rfm(fm_class), _score_pairs(scores))
        b.add("SADD", k.channels, sorted(result.channels))
        _add_triggers(b, k, result.due_index, outbox)
        _add_counters(b, k, result.counts, extra_counts, result.sums)
        for bucket, digests in new_digests.items():
            b.add("SADD", k.dedup(bucket), digests)
            b.add("EXPIRE", k.dedup(bucket), [self.dedup_ttl_s])
        wm = max(result.watermark, meta.watermark or 0)
        position: list[Any] = ["offset", offset, "wm", wm]
        if swept is not None:
            position += ("swept", swept)
        if committed_at is not None:
            position += ("at", committed_at)  # wall time of the commit: the console's "last commit"
        b.add("HSET", k.meta, position)
        await self._run(b, meta)

    async def sweep_position(self, partition: int) -> tuple[Meta, list[str]]:
        """The partition's meta and channels, in one round trip: what a sweep starts from."""
        k = self.keys(partition)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k.meta, META_FIELDS)
        pipe.smembers(k.channels)
        meta_raw, channels_raw = await pipe.execute()
        return Meta(*(as_text(v) for v in meta_raw)), sorted(as_text(c) for c in channels_raw)

    async def sweep_candidates(
        self,
        partition: int,
        channels: list[str],
        swept: int,
        now: int,
        th: Thresholds,
        recall_offsets: Sequence[int] = (),
    ) -> list[str]:
        """Ids of the users with a change point, a recall point or a pending trigger due in
        `(swept, now]`, sorted: range queries, never a scan."""
        k = self.keys(partition)
        pipe = self.redis.pipeline(transaction=False)
        la_offsets, fs_offsets = change_offsets(th)
        idle = sorted({*la_offsets, *recall_offsets})
        for ch in channels:
            for after in idle:
                pipe.zrangebyscore(k.active(ch), f"({swept - after}", now - after)
            for after in fs_offsets:
                pipe.zrangebyscore(k.first(ch), f"({swept - after}", now - after)
        pipe.zrangebyscore(k.due, "-inf", now)
        return sorted({as_text(u) for reply in await pipe.execute() for u in reply})

    async def records(self, partition: int, uids: list[str]) -> dict[str, UserRecord]:
        if not uids:
            return {}
        raws = await self.redis.hmget(self.keys(partition).users, uids)
        return {u: UserRecord.unpack(r) for u, r in zip(uids, raws, strict=True) if r is not None}

    async def commit_sweep(
        self,
        partition: int,
        meta: Meta,
        result: SweepResult,
        now: int,
        channels: list[str],
        first_index_window: int,
        outbox: Sequence[OutboxEntry] = (),
        final: bool = True,
    ) -> None:
        """Commit a sweep's (or a chunk's) records, triggers and counters; the `final` one
        also moves the partition's `swept` to `now` and trims the first-seen indexes."""
        k = self.keys(partition)
        b = CommitBuilder(k)
        users: list[Any] = []
        for uid, rec in result.records.items():
            users += (uid, rec.pack())
        b.add("HSET", k.users, users)
        _add_triggers(b, k, result.due_index, outbox)
        _add_counters(b, k, result.counts, None, None)
        if final:
            for ch in channels:
                b.add("ZREMRANGEBYSCORE", k.first(ch), ["-inf", now - first_index_window])
            b.add("HSET", k.meta, ["swept", now])
        await self._run(b, meta)

    async def outbox_read(self, partition: int, count: int) -> list[OutboxItem]:
        """The oldest `count` entries of the partition's outbox."""
        raw = await self.redis.xrange(self.keys(partition).outbox, "-", "+", count=count)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw or [])
        return [OutboxItem(as_text(sid), as_text(fields[b"u"]), fields[b"ce"]) for sid, fields in entries]

    async def outbox_trim(self, partition: int, through: str) -> None:
        """Drop the outbox entries up to and including stream id `through` (relayed)."""
        ms, seq = (int(x) for x in through.split("-"))
        await self.redis.xtrim(self.keys(partition).outbox, minid=f"{ms}-{seq + 1}", approximate=False)

    async def outbox_length(self, partition: int) -> int:
        return int(await self.redis.xlen(self.keys(partition).outbox))

    async def _run(self, b: CommitBuilder, meta: Meta) -> None:
        keys, argv = b.render(meta.checks())
        reply = await self._commit(keys=keys, args=argv)
        status = as_text(reply[0])
        if status == "OK":
            return
        field, current = as_text(reply[1]), as_text(reply[2])
        if field == "gen":
            raise FencedError(f"partition owner generation is now {current!r}, ours was {meta.gen!r}")
        raise ConflictError(
            f"meta field {field!r} changed to {current!r} (expected {getattr(meta, field)!r})"
        )


def _add_triggers(
    b: CommitBuilder, k: PartitionKeys, due_index: Mapping[str, int | None], outbox: Sequence[OutboxEntry]
) -> None:
    b.add("ZREM", k.due, [uid for uid, due in due_index.items() if due is None])
    b.add("ZADD", k.due, _score_pairs({uid: due for uid, due in due_index.items() if due is not None}))
    for tid, uid, payload in outbox:
        b.add("XADD", k.outbox, ["*", "id", tid, "u", uid, "ce", payload])


def _score_pairs(scores: Mapping[str, int]) -> list[Any]:
    out: list[Any] = []
    for uid, score in scores.items():
        out += (score, uid)
    return out


def _add_counters(
    b: CommitBuilder,
    k: PartitionKeys,
    counts: Mapping[str, int],
    extra: Mapping[str, int] | None,
    sums: Mapping[str, float] | None,
) -> None:
    for source in (counts, extra or {}):
        for name, delta in source.items():
            if delta:
                if name.startswith(ctr.COHORT_PREFIXES):
                    key = k.cohorts
                elif name.startswith(ctr.FUNNEL_COHORT_PREFIX):
                    key = k.funnel_cohorts
                elif name.startswith(ctr.INTERVAL_PREFIX):
                    key = k.intervals
                else:
                    key = k.counters
                b.add("HINCRBY", key, [name, delta])
    for name, fdelta in (sums or {}).items():
        if fdelta and math.isfinite(fdelta):
            b.add("HINCRBYFLOAT", k.counters, [name, repr(fdelta)])
