"""Reading the tail of one topic partition: where the outbox relay's predecessor got to."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

TAIL_MESSAGES = 2000  # more than one relay round, so the last relayed entry is always in reach


async def last_header_values(
    bootstrap: list[str],
    topic: str,
    partition: int,
    header: str,
    tail: int = TAIL_MESSAGES,
    **client_options: Any,
) -> list[bytes]:
    """Values of `header` on the last `tail` messages of the partition (to its end).

    Reads to the end rather than trusting the end offset alone: some brokers (Tansu)
    report the last record batch's base offset as the high watermark. `client_options`:
    aiokafka connection options (TLS, SASL; `kafka_clients.aiokafka_options`).
    """
    consumer = AIOKafkaConsumer(
        **{**client_options, "bootstrap_servers": bootstrap},
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return []
        consumer.seek(tp, max(0, end - tail))
        values: list[bytes] = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            records = batch.get(tp, [])
            if not records:
                return values
            for record in records:
                values.extend(v for k, v in record.headers if k == header)
    finally:
        await consumer.stop()
