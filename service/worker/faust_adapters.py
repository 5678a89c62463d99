"""The worker's ports onto Faust: its producer as the sink, its consumer for positioning."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import faust
from aiokafka.errors import KafkaError
from faust.transport.consumer import Consumer
from faust.types import TP

from service.kafka.errors import permanent
from service.kafka.options import aiokafka_options
from service.kafka.tail import last_header_values
from service.settings import Settings
from service.worker.outgoing import Outgoing


class FaustSink:
    """Sends dead letters and re-routed events through the app's producer, acks awaited."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.bootstrap = settings.bootstrap_servers
        self.options = aiokafka_options(settings)

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        producer = self.app.producer
        futures = []
        refused: list[tuple[Outgoing, BaseException]] = []
        for m in messages:
            try:
                futures.append(
                    (m, await producer.send(m.topic, m.key, m.value, m.partition, None, m.headers))
                )
            except KafkaError as exc:  # refused before it left: too large for the producer
                if not permanent(exc):
                    raise
                refused.append((m, exc))
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (m, _), result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                if not (isinstance(result, KafkaError) and permanent(result)):
                    raise result
                refused.append((m, result))
        return refused

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        return await last_header_values(self.bootstrap, topic, partition, header, **self.options)


class FaustConsumer:
    """The app's consumer of the events topic (`service.worker.rebalance.Consumer`).

    Faust's public consumer API has no commit of chosen offsets, hence `_commit`, the
    driver method its own commits go through.
    """

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    def generation(self) -> int:
        return self.app.consumer_generation_id

    def assignment(self) -> list[int]:
        return [tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic]

    async def commit(self, offsets: dict[int, int]) -> bool:
        tps = {TP(self.topic, p): offset for p, offset in offsets.items()}
        return await cast(Consumer, self.app.consumer)._commit(tps)

    async def seek(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.topic, partition), offset)

    def highwater(self, partition: int) -> int | None:
        try:
            return cast(int | None, self.app.consumer.highwater(TP(self.topic, partition)))
        except AssertionError:  # revoked by a rebalance meanwhile: no lag to report
            return None
