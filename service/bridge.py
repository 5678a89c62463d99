"""`lifecycle bridge`: one-event-per-message topics into envelopes, at close to the raw rate.

Faust spends several event-loop turns per Kafka message, so a pipeline that writes one
event per message would cap the worker far below the broker. The bridge is a plain
aiokafka consumer–producer: `getmany` in large batches, each value parsed once to find
its user, values joined (not re-encoded) into envelopes per target partition, and the
source offsets committed only after the broker acknowledged every envelope. It is
at-least-once; the worker's `event_id` de-duplication makes a redelivery harmless.
Anything that is not a JSON object with a string `user_id` is passed through as it is,
so the worker dead-letters it with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.core.envelopes import envelopes
from service.core.partitioning import partition_for
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BridgeStats:
    events: int = 0
    passed_through: int = 0
    envelopes: int = 0


class Bridge:
    def __init__(
        self,
        settings: Settings,
        source: str,
        group_id: str | None = None,
        max_records: int = 20_000,
        envelope_events: int = 500,
    ) -> None:
        self.settings = settings
        self.source = source
        self.group_id = group_id or f"{settings.app_id}-bridge"
        self.max_records = max_records
        self.envelope_events = envelope_events
        self.stats = BridgeStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> BridgeStats:
        s = self.settings
        consumer = AIOKafkaConsumer(
            self.source,
            bootstrap_servers=s.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.session_timeout * 200),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            acks="all",
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=16 << 20,
        )
        await producer.start()
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batch:
                    await self._forward(producer, batch)
                    await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items()})
        finally:
            await consumer.stop()
            await producer.stop()
        return self.stats

    async def _forward(self, producer: AIOKafkaProducer, batch: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        s = self.settings
        items: list[tuple[str, bytes]] = []
        futures = []
        for msgs in batch.values():
            for m in msgs:
                value = m.value
                user_id = None
                if value and value[:1] == b"{":
                    try:
                        doc = orjson.loads(value)
                    except orjson.JSONDecodeError:
                        doc = None
                    if isinstance(doc, dict):
                        uid = doc.get("user_id")
                        user_id = uid if isinstance(uid, str) and uid else None
                if user_id is not None:
                    items.append((user_id, value))
                    continue
                key = m.key or b""
                target = partition_for(key.decode(errors="replace"), s.partitions) if key else 0
                futures.append(await producer.send(s.events_topic, value=value, key=m.key, partition=target))
                self.stats.passed_through += 1
        for p, key, value in envelopes(items, s.partitions, self.envelope_events):
            futures.append(await producer.send(s.events_topic, value=value, key=key, partition=p))
            self.stats.envelopes += 1
        self.stats.events += len(items)
        await asyncio.gather(*futures)


def run_bridge(settings: Settings, source: str, group_id: str | None) -> None:
    """Run until SIGINT/SIGTERM, finishing (and committing) the batch in hand."""

    async def main() -> None:
        bridge = Bridge(settings, source, group_id)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bridge.stop)
        started = time.monotonic()
        stats = await bridge.run()
        elapsed = time.monotonic() - started
        log.info(
            "bridge stopped: %d events in %d envelopes, %d passed through, %.0f s",
            stats.events,
            stats.envelopes,
            stats.passed_through,
            elapsed,
        )

    asyncio.run(main())
