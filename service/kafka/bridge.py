"""`lifecycle bridge`: one-event-per-message topics into envelopes, at close to the raw rate.

Faust spends several event-loop turns per Kafka message, so a pipeline that writes one
event per message would cap the worker far below the broker. The bridge is a plain
aiokafka consumer–producer: `getmany` in large batches, each value parsed once to find
its user, values joined (not re-encoded) into envelopes per target partition, and the
source offsets committed only after the broker acknowledged every envelope. It is
at-least-once; the worker's `event_id` de-duplication makes a redelivery harmless.
Anything that is not a JSON object with a string `user_id` is passed through as it is,
so the worker dead-letters it with its reason. Envelopes stay under
`LIFECYCLE_ENVELOPE_MAX_BYTES`; a single message over it could never be delivered, so it
goes to the dead-letter topic as a reference: its first 64 KiB, with its size and source.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from service.core.envelopes import TOO_LARGE_KEEP_BYTES, join_envelope, split_values
from service.core.partitioning import partition_for
from service.core.segment import map_value
from service.kafka.options import aiokafka_options
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BridgeStats:
    events: int = 0
    passed_through: int = 0
    envelopes: int = 0
    too_large: int = 0
    unmapped: int = 0


class Bridge:
    def __init__(
        self,
        settings: Settings,
        source: str,
        group_id: str | None = None,
        max_records: int = 20_000,
        envelope_events: int = 500,
        source_format: str = "canonical",
    ) -> None:
        self.settings = settings
        # "segment": each source message is a Segment/RudderStack tracking message, mapped
        # here; one that cannot be mapped is dead-lettered with its reason.
        self.segment = source_format == "segment"
        self.event_map = settings.loaded_profile.event_map
        self.source = source
        self.group_id = group_id or f"{settings.app_id}-bridge"
        self.max_records = max_records
        self.envelope_events = envelope_events
        self.stats = BridgeStats()
        self._stop = asyncio.Event()
        self._partitions: dict[str, int] = {}  # user id -> partition, kept across batches

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> BridgeStats:
        s = self.settings
        consumer = AIOKafkaConsumer(
            self.source,
            **aiokafka_options(s),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.session_timeout * 200),
        )
        producer = AIOKafkaProducer(
            **aiokafka_options(s),
            acks="all",
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=16 << 20,
        )
        await producer.start()
        await consumer.start()
        # Acknowledgements are awaited while the next batch is read and grouped; offsets
        # are committed strictly in order, each only after its batch was acknowledged.
        inflight: deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]] = deque()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batch:
                    acks = asyncio.gather(*await self._forward(producer, batch))
                    inflight.append((acks, {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}))
                while inflight and (inflight[0][0].done() or len(inflight) > 4 or not batch):
                    acks, offsets = inflight.popleft()
                    await acks
                    await consumer.commit(offsets)
            while inflight:
                acks, offsets = inflight.popleft()
                await acks
                await consumer.commit(offsets)
        finally:
            await consumer.stop()
            await producer.stop()
        return self.stats

    async def _forward(
        self, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> list[asyncio.Future[Any]]:
        """Send the batch as envelopes (and anything unparseable as it is); return the acks."""
        s = self.settings
        n_parts = s.partitions
        cache = self._partitions
        if len(cache) > 1_000_000:
            cache.clear()
        buckets: dict[int, list[bytes]] = {}
        keys: dict[int, bytes] = {}
        futures = []
        loads = orjson.loads
        limit = s.envelope_max_bytes
        for tp, msgs in batch.items():
            for m in msgs:
                value = m.value
                if value is not None and len(value) + 2 > limit:
                    futures.append(await self._too_large(producer, tp, m))
                    continue
                if self.segment:
                    mapped = map_value(value, received_ms=m.timestamp, event_map=self.event_map)
                    if isinstance(mapped, str):
                        futures.append(await self._unmapped(producer, tp, m, mapped))
                        continue
                    value = mapped
                if value is not None and value.startswith(b"{"):
                    try:
                        doc = loads(value)
                    except orjson.JSONDecodeError:
                        doc = None
                    if doc.__class__ is dict:
                        uid = doc.get("user_id")
                        if uid.__class__ is str and uid:
                            p = cache.get(uid)
                            if p is None:
                                p = cache[uid] = partition_for(uid, n_parts)
                            bucket = buckets.get(p)
                            if bucket is None:
                                bucket = buckets[p] = []
                                keys[p] = uid.encode()
                            bucket.append(value)
                            continue
                # not an event object with a user: the worker dead-letters it with the reason
                key = m.key or b""
                target = partition_for(key.decode(errors="replace"), n_parts) if key else 0
                futures.append(await producer.send(s.events_topic, value=value, key=m.key, partition=target))
                self.stats.passed_through += 1
        for p, values in buckets.items():
            for run in split_values(values, self.envelope_events, limit):
                envelope = join_envelope(run)
                futures.append(await producer.send(s.events_topic, value=envelope, key=keys[p], partition=p))
                self.stats.envelopes += 1
            self.stats.events += len(values)
        return futures

    async def _unmapped(
        self, producer: AIOKafkaProducer, tp: TopicPartition, m: ConsumerRecord[bytes, bytes], reason: str
    ) -> asyncio.Future[Any]:
        """A tracking message that is no event: to the dead-letter topic with the reason."""
        self.stats.unmapped += 1
        headers = [
            ("x-error-reason", reason[:512].encode()),
            ("x-source-topic", tp.topic.encode()),
            ("x-source-partition", str(tp.partition).encode()),
            ("x-source-offset", str(m.offset).encode()),
        ]
        sent: asyncio.Future[Any] = await producer.send(
            self.settings.dlq_topic, value=m.value, key=m.key, headers=headers
        )
        return sent

    async def _too_large(
        self, producer: AIOKafkaProducer, tp: TopicPartition, m: ConsumerRecord[bytes, bytes]
    ) -> asyncio.Future[Any]:
        value = m.value or b""
        log.warning(
            "bridge: %s[%d] offset %d is %d bytes, over LIFECYCLE_ENVELOPE_MAX_BYTES: dead-lettered",
            tp.topic,
            tp.partition,
            m.offset,
            len(value),
        )
        self.stats.too_large += 1
        headers = [
            ("x-error-reason", b"too_large"),
            ("x-original-size", str(len(value)).encode()),
            ("x-source-topic", tp.topic.encode()),
            ("x-source-partition", str(tp.partition).encode()),
            ("x-source-offset", str(m.offset).encode()),
        ]
        sent: asyncio.Future[Any] = await producer.send(
            self.settings.dlq_topic, value=value[:TOO_LARGE_KEEP_BYTES], key=m.key, headers=headers
        )
        return sent


def run_bridge(
    settings: Settings, source: str, group_id: str | None, source_format: str = "canonical"
) -> None:
    """Run until SIGINT/SIGTERM, finishing (and committing) the batch in hand."""

    async def main() -> None:
        bridge = Bridge(settings, source, group_id, source_format=source_format)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bridge.stop)
        started = time.monotonic()
        stats = await bridge.run()
        elapsed = time.monotonic() - started
        log.info(
            "bridge stopped: %d events in %d envelopes, %d passed through, %d too large, %d unmapped, %.0f s",
            stats.events,
            stats.envelopes,
            stats.passed_through,
            stats.too_large,
            stats.unmapped,
            elapsed,
        )

    asyncio.run(main())
