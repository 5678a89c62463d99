"""The worker's batch step for one partition: decode, read, sort, apply, dead-letter, commit.

This is the imperative shell around `service.core.intake` (what each message is) and
`service.core.batch` (what the fresh events change): two Redis round trips per batch
(a `BatchTransaction`'s snapshot and commit) whatever its size, and no per-event awaits. Dead letters and
misrouted events are acknowledged by the broker *before* the commit, so a crash can
duplicate them (harmless: ids) but never lose them; the commit stores the applied
offset, so a replay after a crash is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from service.core import counters as ctr
from service.core.batch import apply_events, sweep
from service.core.channels import cap_channels
from service.core.cloudevents import STRUCTURED_CONTENT_TYPE
from service.core.cloudevents import encode as encode_trigger
from service.core.controls import CONTROL_TYPES
from service.core.dedup import dedup_bucket
from service.core.intake import Message, decode_batch, sort_batch
from service.core.profile import Profile
from service.core.triggers import Fired, recall_offsets
from service.settings import Settings
from service.storage.store import ConflictError, FencedError, OutboxEntry, RedisStore
from service.worker.claims import Claims, LogIdentity
from service.worker.metrics import OUTCOMES, WorkerMetrics
from service.worker.outage import Outage, backoff_delay, passes_with_time
from service.worker.outgoing import (
    OUTBOX_HEADER,
    Outgoing,
    Sink,
    as_reference,
    dead_letter,
    rerouted,
    sent_on,
)
from service.worker.partition import Partition, Partitions
from service.worker.topic_identity import BrokerUnavailable
from service.worker.transaction import BatchTransaction, check_fence

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchStats:
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    misrouted: int = 0
    replayed: int = 0
    undeliverable: int = 0  # dead letters or re-routed envelopes a send refused for good
    fenced: bool = False  # dropped unapplied: another owner has it, or it is re-read from Redis's position


class PartitionProcessor:
    """Owns the batches and sweeps of the partitions assigned to this worker."""

    def __init__(
        self,
        store: RedisStore,
        sink: Sink,
        settings: Settings,
        profile: Profile,
        metrics: WorkerMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
        is_assigned: Callable[[int], bool] = lambda partition: True,
        log_id: LogIdentity | None = None,
        partitions: Partitions | None = None,
        reclaim_hold: float = 0.0,
    ) -> None:
        self.store = store
        self.sink = sink
        self.settings = settings
        self.profile = profile
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.is_assigned = is_assigned  # Kafka's word on who owns a partition: the arbiter of fencing
        self.reclaim_hold = reclaim_hold  # seconds a fenced partition waits before claiming again
        self.outage = Outage(metrics.redis_unavailable if metrics else None)
        self.partitions = partitions if partitions is not None else Partitions()
        self.claims = Claims(store, self.partitions, log_id, metrics)
        self._recall_offsets = recall_offsets(profile)

    def release(self, partition: int) -> None:
        """Forget ownership (fenced, offsets went back); the next batch claims it anew."""
        self.claims.release(partition)

    def revoke(self, partition: int) -> None:
        """Kafka revoked the partition: forget ownership and position until it is assigned again."""
        self.claims.revoke(partition)

    def _outbox(self, fired: Sequence[Fired]) -> list[OutboxEntry]:
        s = self.settings
        return [
            OutboxEntry(f.id, f.user_id, encode_trigger(f, s.triggers_source, s.triggers_type_prefix))
            for f in fired
        ]

    async def process(self, partition: int, messages: Sequence[Message]) -> BatchStats:
        """Apply `(offset, key, value)` messages of one partition, in offset order.

        Retries on Redis errors until it succeeds (the stream pauses rather than losing
        or skipping events; see `service.worker.outage`), and on broker errors likewise. When
        fenced by a newer owner, the batch is dropped only if Kafka no longer assigns us
        the partition (the new owner re-reads it); while Kafka still does, the fence came
        from a stale claim, so we claim again and retry: our consumer has moved past these
        messages and nobody else would apply them.
        """
        part = self.partitions[partition]
        if messages:
            last = part.last_offset
            if last is not None and messages[0][0] <= last:
                # Within one ownership offsets only grow: the log itself went back. Claiming
                # again re-checks which log the stored offsets belong to before any is skipped.
                log.warning(
                    "partition %d: offsets went back from %d to %d without a rebalance; "
                    "checking the topic id before applying",
                    partition,
                    last,
                    messages[0][0],
                )
                self.release(partition)
            part.last_offset = messages[-1][0]
        started = time.perf_counter()
        fences = 0
        broker_attempts = 0
        while True:
            try:
                async with part.lock:
                    stats = await self._process_once(part, messages)
                self.outage.recovered()
                break
            except FencedError as exc:
                self.claims.fenced(partition, self.reclaim_hold)
                if self.metrics:
                    self.metrics.fenced.inc()
                if not self.is_assigned(partition):
                    log.warning(
                        "partition %d: fenced and no longer assigned, dropping batch: %s", partition, exc
                    )
                    return BatchStats(fenced=True)
                fences += 1
                if fences > 100:
                    raise RuntimeError(f"partition {partition}: fenced 100 times while assigned") from exc
                log.warning(
                    "partition %d: fenced while still assigned (%s); claiming again in %.1fs "
                    "unless Kafka revokes it meanwhile",
                    partition,
                    exc,
                    self.reclaim_hold,
                    extra={"partition": partition},
                )
                await asyncio.sleep(max(self.reclaim_hold, min(0.05 * fences, 1.0)))
            except ConflictError as exc:
                log.info("partition %d: %s; retrying", partition, exc, extra={"partition": partition})
            except (RedisError, OSError) as exc:
                if not passes_with_time(exc):
                    raise
                if self.metrics:
                    self.metrics.redis_retries.inc()
                await asyncio.sleep(self.outage.failed(exc))
            except (KafkaError, BrokerUnavailable) as exc:
                delay = backoff_delay(broker_attempts)
                broker_attempts += 1
                log.warning(
                    "partition %d: broker unavailable (%s); retrying in %.1fs",
                    partition,
                    exc,
                    delay,
                    extra={"partition": partition},
                )
                await asyncio.sleep(delay)
        if self.metrics:
            m = self.metrics
            m.batch_seconds.observe(time.perf_counter() - started)
            m.batch_events.observe(stats.applied)
            m.batches.labels("events").inc()
            for outcome in OUTCOMES:
                value = getattr(stats, outcome)
                if value:
                    m.events.labels(outcome).inc(value)
        return stats

    async def _process_once(self, part: Partition, messages: Sequence[Message]) -> BatchStats:
        settings = self.settings
        partition = part.number
        if not part.claimed and not self.is_assigned(partition):
            # Revoked while this batch was in hand. Safe to drop: every assignment starts
            # the partition at the offset after Redis's applied one (`assigned`).
            log.info("partition %d: no longer assigned, dropping a batch in hand", partition)
            return BatchStats(fenced=True)
        if part.new_log and messages:
            if messages[0][0] > 0:
                # Still from the old log (a memory-only broker keeps the group generation
                # across its restart, so Faust cannot tell): the new one is read from 0.
                log.info("partition %d: dropping a batch of the old log after its re-base", partition)
                return BatchStats(fenced=True)
            part.new_log = False
        gen = await self._owner_generation(part, messages[0][0] if messages else None)
        bounds = settings.time_bounds(int(self.wall_clock() * 1000))
        batch = decode_batch(messages, settings.partitions, bounds, dedup_bucket)
        tx = BatchTransaction(self.store, partition, gen)
        started = time.perf_counter()
        snap = await tx.begin(batch.users_of(partition), batch.digests)
        if self.metrics:
            self.metrics.redis_load.observe(time.perf_counter() - started)
        applied_offset = snap.meta.applied_offset
        intake = sort_batch(batch, partition, applied_offset, snap.seen, dedup_bucket)
        stats = BatchStats(
            duplicates=intake.duplicates,
            rejected=intake.rejected,
            misrouted=intake.misrouted_count,
            replayed=intake.replayed,
        )
        if intake.last_offset == applied_offset:
            tx.complete_unchanged()
            return stats  # everything was already applied: a replay after a crash

        fresh = cap_channels(intake.fresh, snap.channels, settings.max_channels)
        swept = snap.meta.swept_ms
        if swept is None:
            # the first events start the partition's clock (a control message's request time does not)
            swept = min((e.ts for e in fresh if e.type not in CONTROL_TYPES), default=None)
        result = apply_events(
            snap.records,
            fresh,
            swept if swept is not None else 0,
            self.profile,
            settings.first_index_window_ms,
            snap.suppressed,
            snap.merged_into,
        )
        limit = settings.envelope_max_bytes
        outgoing = [
            dead_letter(settings.dlq_topic, settings.events_topic, partition, d, limit)
            for d in intake.dead_letters
        ]
        for target, evs in intake.misrouted.items():
            outgoing += rerouted(settings.events_topic, partition, target, evs, limit)
        # identity merges' messages and the events of merged ids, under the id they went into
        outgoing += sent_on(settings.events_topic, partition, settings.partitions, result.outgoing)
        if outgoing:
            refused = await self.sink.send_and_wait(outgoing)
            # A dead-letter topic that takes less than we do gets the reference instead.
            references = [(m, ref) for m, _ in refused if (ref := as_reference(m)) is not None]
            if references:
                retried = await self.sink.send_and_wait([ref for _, ref in references])
                first = {id(m) for m, _ in references}
                refused = [(m, e) for m, e in refused if id(m) not in first] + retried
            stats.undeliverable = len(refused)
            for message, exc in refused:
                # No retry would deliver it; holding the batch back would stall the partition.
                log.error(
                    "%s: undeliverable to %s (%d bytes): %s; counted, the stream goes on",
                    message.origin,
                    message.topic,
                    len(message.value),
                    exc,
                    extra={"partition": partition, "topic": message.topic},
                )

        stats.applied = result.counts.get(ctr.APPLIED, 0)
        tx.prepare(
            result,
            offset=intake.last_offset,
            new_digests=intake.new_digests,
            swept=swept,
            extra_counts={
                ctr.DUPLICATES: stats.duplicates,
                ctr.REJECTED: stats.rejected,
                ctr.MISROUTED: stats.misrouted,
                ctr.UNDELIVERABLE: stats.undeliverable,
            },
            outbox=self._outbox(result.triggers.fired),
            committed_at=int(self.wall_clock() * 1000),
        )
        started = time.perf_counter()
        await tx.commit()
        if self.metrics:
            self.metrics.redis_commit.observe(time.perf_counter() - started)
            self.metrics.record_counts(result.counts)
            self.metrics.record_triggers(result.triggers.fired)
            self.metrics.record_gaps(result.gaps)
            self.metrics.record_conversions(result.conversions)
            self.metrics.record_sums(result.sums)
            self.metrics.record_lag(int(self.wall_clock() * 1000), [e.ts for e in fresh])
        return stats

    def clock_ms(self, watermark: int | None) -> int | None:
        """The partition's clock: wall time, or in event mode its own latest event time.

        A per-partition event clock (Kafka Streams' "stream time") keeps a replay
        deterministic however unevenly partitions progress; the API reads the maximum.
        """
        if self.settings.clock == "wall":
            return int(self.wall_clock() * 1000)
        return watermark

    async def assigned(self, partitions: Sequence[int]) -> dict[int, int]:
        """Claim newly assigned partitions and say where their consumer must start (`Claims.assigned`)."""
        return await self.claims.assigned(partitions)

    async def _owner_generation(self, part: Partition, first_offset: int | None = None) -> str:
        return await self.claims.generation(part, first_offset)

    async def sweep(self, partition: int) -> int:
        """Count the time-driven transitions of an assigned partition since its last sweep."""
        part = self.partitions[partition]
        async with part.lock:
            if not part.claimed and not (self.is_assigned(partition) and part.may_reclaim()):
                return 0  # revoked since the caller listed it, or fenced: claiming would fence the new owner
            gen = await self._owner_generation(part)
            th = self.profile.thresholds
            try:
                meta, channels = await self.store.sweep_position(partition)
                check_fence(meta, gen)
                swept = meta.swept_ms
                now = self.clock_ms(meta.watermark)
                if swept is None or now is None or now <= swept:
                    return 0
                uids = await self.store.sweep_candidates(
                    partition, channels, swept, now, th, self._recall_offsets
                )
                # Each chunk is one bounded read and one bounded commit. All but the last
                # mark their users accounted to `now`; the last also moves `swept`.
                size = self.settings.sweep_chunk
                chunked = len(uids) > size
                done = 0
                for start in range(0, max(len(uids), 1), size):
                    final = start + size >= len(uids)
                    candidates = await self.store.records(partition, uids[start : start + size])
                    result = sweep(candidates, swept, now, self.profile, mark_accounted=chunked)
                    await self.store.commit_sweep(
                        partition,
                        meta,
                        result,
                        now,
                        channels,
                        self.settings.first_index_window_ms,
                        self._outbox(result.triggers.fired),
                        final=final,
                    )
                    done += sum(result.counts.values())
                    if self.metrics:
                        self.metrics.record_counts(result.counts)
                        self.metrics.record_triggers(result.triggers.fired)
            except FencedError:
                self.claims.fenced(partition, self.reclaim_hold)
                return 0
        if self.metrics:
            self.metrics.batches.labels("sweep").inc()
        return done

    def outbox_header(self, stream_id: str) -> bytes:
        """`<app id>/<key prefix>/<stream id>`: whose outbox, and where in it."""
        return f"{self.settings.app_id}/{self.settings.key_prefix}/{stream_id}".encode()

    async def _trim_delivered(self, partition: int, on_topic: set[str]) -> None:
        """Trim the outbox's leading entries that are on the topic already. Only the leading
        ones: a producer drops a batch that timed out and goes on with the next, so an
        earlier entry can be missing while a later one landed; from the first missing
        entry on, everything is sent again (ids make the repeats harmless)."""
        while True:
            entries = await self.store.outbox_read(partition, self.settings.relay_batch)
            delivered = 0
            for sid, _, _ in entries:
                if sid not in on_topic:
                    break
                delivered += 1
            if delivered:
                await self.store.outbox_trim(partition, entries[delivered - 1][0])
            if delivered < len(entries) or not entries:
                return

    async def relay(self, partition: int) -> int:
        """Publish the partition's outbox to the trigger topic, oldest first; returns how many.

        Entries are trimmed only after the broker acknowledged them, so a crash in between
        re-publishes them with the same ids. Each trigger partition has one writer (the
        owner of the same events partition), so after a claim the relay reads where its
        predecessor got to from the topic itself and skips what is already there.
        """
        part = self.partitions[partition]
        if not part.claimed:
            return 0
        s = self.settings
        if not part.relay_synced:
            seen = await self.sink.last_header(s.triggers_topic, partition, OUTBOX_HEADER)
            ours = self.outbox_header("")
            mine = {v.decode()[len(ours) :] for v in seen if v.startswith(ours)}
            if mine:  # only our own: another deployment's ids on a shared topic say nothing of ours
                await self._trim_delivered(partition, mine)
            part.relay_synced = True
        entries = await self.store.outbox_read(partition, s.relay_batch)
        if not entries:
            return 0
        refused = await self.sink.send_and_wait(
            [
                Outgoing(
                    s.triggers_topic,
                    ce,
                    uid.encode(),
                    partition,
                    [(OUTBOX_HEADER, self.outbox_header(sid)), ("content-type", STRUCTURED_CONTENT_TYPE)],
                )
                for sid, uid, ce in entries
            ]
        )
        if refused:  # kept in the outbox, retried next tick: a trigger is never dropped
            log.error(
                "partition %d: the triggers topic refuses trigger CloudEvents: %s", partition, refused[0][1]
            )
            return 0
        await self.store.outbox_trim(partition, entries[-1][0])
        if self.metrics:
            self.metrics.relayed.inc(len(entries))
        return len(entries)
