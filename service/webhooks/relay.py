"""`lifecycle webhooks`: the triggers topic, POSTed as signed webhooks, at least once.

A plain aiokafka consumer in its own group (one or more processes share the partitions).
Each trigger goes into its user's lane (`Lanes`): one user's triggers in order, other
users meanwhile. A trigger the receiver refuses, or that fails every attempt, goes to
the webhook dead-letter topic with the last status; only then, or once delivered, is it
finished. A partition's offset is committed up to its lowest unfinished message, so a
kill at any point redelivers (the same `webhook-id`: receivers de-duplicate on it) and
never skips. Messages in flight are bounded: at the bound the partitions are paused,
while polling goes on to keep the group membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from service.core.webhook_delivery import OffsetTracker, Verdict
from service.kafka.options import aiokafka_options
from service.settings import Settings
from service.webhooks.lanes import Deliverer, Lanes
from service.webhooks.metrics import WebhookMetrics

log = logging.getLogger(__name__)

MAX_ID_LEN = 256  # a webhook-id longer than this is no trigger of ours
COMMIT_EVERY_S = 1.0


@dataclass(slots=True)
class RelayStats:
    delivered: int = 0
    dead: int = 0
    malformed: int = 0


@dataclass(frozen=True, slots=True)
class _Finished:
    tp: TopicPartition
    offset: int
    epoch: int


def trigger_of(value: bytes | None) -> tuple[str, str] | str:
    """`(id, subject)` of a trigger CloudEvent, or the reason it is none."""
    if not value:
        return "empty message"
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(doc, dict):
        return "not a JSON object"
    tid, subject = doc.get("id"), doc.get("subject")
    if not isinstance(tid, str) or not 0 < len(tid) <= MAX_ID_LEN:
        return f"id must be a string of 1..{MAX_ID_LEN} characters"
    if not isinstance(subject, str) or not subject:
        return "subject (the user id) must be a non-empty string"
    return tid, subject


class WebhookRelay:
    def __init__(
        self,
        settings: Settings,
        deliverer: Deliverer,
        metrics: WebhookMetrics | None = None,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or f"{settings.app_id}-webhooks"
        self.lanes = Lanes(deliverer.deliver)
        self.metrics = metrics
        self.stats = RelayStats()
        self.max_in_flight = settings.webhook_concurrency * 8
        self._stop = asyncio.Event()
        self._finished: asyncio.Queue[_Finished] = asyncio.Queue()
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._epochs: dict[TopicPartition, int] = {}  # a new epoch per assignment of a partition
        self._in_flight = 0
        self._paused = False
        self._dirty: set[TopicPartition] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> RelayStats:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **aiokafka_options(s),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.session_timeout * 200),
        )
        producer = AIOKafkaProducer(**aiokafka_options(s), acks="all", linger_ms=5)
        await producer.start()
        await consumer.start()
        consumer.subscribe([s.triggers_topic], listener=_Listener(self, consumer))
        tasks: set[asyncio.Task[None]] = set()
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                self._flow(consumer)
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_in_flight)
                for tp, msgs in batch.items():
                    epoch = self._epochs.setdefault(tp, 0)
                    tracker = self._trackers.get(tp)
                    for m in msgs:
                        if tracker is None:
                            tracker = self._trackers[tp] = OffsetTracker(m.offset)
                        self._in_flight += 1
                        task = asyncio.create_task(self._one(producer, tp, m, epoch))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                self._drain()
                if self._dirty and (time.monotonic() - last_commit >= COMMIT_EVERY_S or not batch):
                    await self._commit(consumer)
                    last_commit = time.monotonic()
            # stopping: let what is in flight finish for a while, then commit what finished
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settle(), timeout=s.webhook_timeout + 5)
            self._drain()
            await self._commit(consumer)
        finally:
            for task in tasks:
                task.cancel()
            await consumer.stop()
            await producer.stop()
        return self.stats

    async def _settle(self) -> None:
        while self._in_flight:
            await asyncio.sleep(0.05)
            self._drain()

    def _flow(self, consumer: AIOKafkaConsumer) -> None:
        """Pause fetching at the in-flight bound, resume below half of it."""
        if not self._paused and self._in_flight >= self.max_in_flight:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif self._paused and self._in_flight < self.max_in_flight // 2:
            consumer.resume(*consumer.paused())
            self._paused = False

    async def _one(self, producer: AIOKafkaProducer, tp: TopicPartition, m: Any, epoch: int) -> None:
        """Deliver or dead-letter one message, then mark it finished."""
        try:
            parsed = trigger_of(m.value)
            if isinstance(parsed, str):
                self.stats.malformed += 1
                await self._dead_letter(producer, tp, m, reason=parsed, status=None, attempts=0)
            else:
                tid, subject = parsed
                outcome = await self.lanes.submit(subject, tid, m.value)
                if outcome.verdict is Verdict.DELIVERED:
                    self.stats.delivered += 1
                else:
                    self.stats.dead += 1
                    await self._dead_letter(
                        producer,
                        tp,
                        m,
                        reason="refused or failed",
                        status=outcome.status,
                        attempts=outcome.attempts,
                    )
        except asyncio.CancelledError:
            raise
        except Exception:  # the message stays unfinished: its offset is never committed past
            log.exception("webhooks: %s[%d] offset %d not finished", tp.topic, tp.partition, m.offset)
            return
        self._finished.put_nowait(_Finished(tp, m.offset, epoch))

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        m: Any,
        *,
        reason: str,
        status: int | None,
        attempts: int,
    ) -> None:
        headers = [
            ("x-error-reason", reason[:512].encode()),
            ("x-source-topic", tp.topic.encode()),
            ("x-source-partition", str(tp.partition).encode()),
            ("x-source-offset", str(m.offset).encode()),
            ("x-webhook-attempts", str(attempts).encode()),
        ]
        if status is not None:
            headers.append(("x-webhook-status", str(status).encode()))
        log.warning(
            "webhooks: %s[%d] offset %d dead-lettered (%s, status %s after %d attempts)",
            tp.topic,
            tp.partition,
            m.offset,
            reason,
            status,
            attempts,
            extra={"topic": tp.topic, "partition": tp.partition, "offset": m.offset},
        )
        sent = await producer.send(self.settings.webhook_dlq_topic, value=m.value, key=m.key, headers=headers)
        await sent

    def _drain(self) -> None:
        """Move the commit points past what finished (in this assignment of its partition)."""
        while not self._finished.empty():
            done = self._finished.get_nowait()
            self._in_flight -= 1
            tracker = self._trackers.get(done.tp)
            if tracker is None or self._epochs.get(done.tp) != done.epoch:
                continue  # revoked meanwhile: the new owner delivers it again
            if tracker.finish(done.offset) is not None:
                self._dirty.add(done.tp)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: self._trackers[tp].next_commit for tp in self._dirty if tp in self._trackers}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way: tried again next round (or redelivered)
            log.warning("webhooks: commit failed, kept for the next round: %s", exc)
            return
        self._dirty.difference_update(offsets)

    async def revoked(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Commit what finished on the partitions leaving, then forget them."""
        self._drain()
        offsets = {tp: self._trackers[tp].next_commit for tp in revoked if tp in self._trackers}
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # the group moved on: those are redelivered, not lost
                log.warning("webhooks: commit on revoke failed: %s", exc)
        for tp in revoked:
            self._trackers.pop(tp, None)
            self._dirty.discard(tp)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, relay: WebhookRelay, consumer: AIOKafkaConsumer) -> None:
        self.relay, self.consumer = relay, consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.relay.revoked(self.consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None
