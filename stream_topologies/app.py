"""The worker's Faust app: one agent on the events topic, one sweep timer, /metrics.

Only wiring lives here. Messages are taken in batches, grouped by partition and handed
to `PartitionProcessor`, which is where reading, applying and committing happen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from faust.transport.consumer import Consumer
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from service.core.intake import Message
from service.kafka.options import aiokafka_options, faust_credentials, kafka_python_options
from service.kafka.tail import last_header_values
from service.settings import Settings
from service.storage.client import AnyRedis, redis_client
from service.storage.store import RedisStore, StoreError
from service.worker.metrics import WorkerMetrics
from service.worker.outage import backoff_delay
from service.worker.outgoing import Outgoing
from service.worker.processor import PartitionProcessor, RepositionRequired
from service.worker.topic_identity import BrokerUnavailable, TopicIdentity

log = logging.getLogger(__name__)


class FaustSink:
    """Sends dead letters and re-routed events through the app's producer, acks awaited."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.bootstrap = settings.bootstrap_servers
        self.options = aiokafka_options(settings)

    async def send_and_wait(self, messages: Sequence[Outgoing]) -> None:
        producer = self.app.producer
        futures = [
            await producer.send(m.topic, m.key, m.value, m.partition, None, m.headers) for m in messages
        ]
        await asyncio.gather(*futures)

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        return await last_header_values(self.bootstrap, topic, partition, header, **self.options)


def _exit(reason: str, code: int) -> None:
    """Crash-only exit: no cleanup that could commit or ack anything on the way out."""
    if reason:
        log.critical("%s", reason)
    logging.shutdown()
    os._exit(code)


def _free_port() -> int:
    """Faust needs a concrete port; `LIFECYCLE_WORKER_PORT=0` means any free one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_app(settings: Settings, redis: AnyRedis | None = None) -> faust.App:
    """Build the worker app; `redis` may be given (tests), else it comes from the settings."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s}" for s in settings.bootstrap_servers],
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.worker_port or _free_port(),
        web_host=settings.worker_host,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.batch_messages * 2),
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 5),
        consumer_metadata_max_age_ms=int(settings.metadata_max_age * 1000),
        logging_config=None,
        datadir=settings.worker_data_dir,
    )
    profile = settings.loaded_profile
    # Timeouts turn a Redis that hangs (stopped, partitioned) into errors the processor backs off on.
    redis = redis or redis_client(
        settings,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=min(settings.redis_timeout, 5.0),
    )
    store = RedisStore(redis, settings.key_prefix, settings.dedup_window_s)
    metrics = WorkerMetrics(max_channels=settings.metrics_max_channels)

    # Partitions positioned by `start_from_redis` since their last revocation. Not the
    # consumer's assignment: during a rebalance that still lists partitions already revoked.
    positioned: set[int] = set()

    def is_assigned(partition: int) -> bool:
        return partition in positioned

    processor = PartitionProcessor(
        store,
        FaustSink(app, settings),
        settings,
        profile,
        metrics,
        is_assigned=is_assigned,
        log_id=TopicIdentity(
            settings.bootstrap_servers, settings.events_topic, kafka_python_options(settings)
        ),
    )
    app.processor = processor  # type: ignore[attr-defined]
    events = app.topic(settings.events_topic, partitions=settings.partitions)

    @app.agent(events)
    async def apply(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(
            settings.batch_messages, within=settings.batch_wait
        ):
            by_partition: dict[int, list[Message]] = defaultdict(list)
            generation = app.consumer_generation_id
            for event in batch:
                msg = event.message
                if msg.generation_id != generation:
                    # Taken before the last rebalance: its partition has been re-read from
                    # Redis's position since, and applying it could skip what lies between.
                    continue
                by_partition[msg.partition].append((msg.offset, msg.key, msg.value))
            try:
                for partition, messages in by_partition.items():
                    await processor.process(partition, messages)
                    try:
                        highwater = app.consumer.highwater(TP(settings.events_topic, partition))
                    except AssertionError:  # revoked by a rebalance meanwhile: no lag to report
                        highwater = None
                    if highwater is not None:
                        metrics.consumer_lag.labels(str(partition)).set(highwater - messages[-1][0] - 1)
            except RepositionRequired as exc:
                _exit(str(exc), 75)
            except BaseException:
                # take_events acks the batch on the way out, even on error: die before it
                # can, so nothing unapplied is ever committed (crash-only, like kill -9).
                log.critical("unexpected error applying a batch; exiting", exc_info=True)
                _exit("", 70)

    @app.timer(interval=settings.sweep_interval)
    async def sweep_owned() -> None:
        outage = processor.outage
        if not outage.retry_due():  # Redis is down: sweeps try no more often than batches do
            return
        for partition in sorted(positioned):
            try:
                await processor.sweep(partition)
                while await processor.relay(partition) >= settings.relay_batch:
                    pass
                outage.recovered()
            except RepositionRequired as exc:
                _exit(str(exc), 75)
            except (
                RedisError,
                OSError,
            ) as exc:  # Redis away: one warning per outage, see service.worker.outage
                outage.failed(exc)
                return
            except (KafkaError, BrokerUnavailable, StoreError) as exc:  # the next tick tries again
                log.warning("sweep or relay of partition %d skipped: %s", partition, exc)
                return

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def start_from_redis(sender: Any, **kwargs: Any) -> None:
        """Start every assigned partition where Redis says, before Faust resumes the flow.

        Faust seeks to the broker's committed offsets right after this signal, so the
        positions are committed first, and sought too (an offset of 0 is not sought to by
        aiokafka's seek-to-committed). Retries while Redis or the broker is away (the flow
        stays paused, `/readyz` says so), and gives up when a newer rebalance starts: its
        own signal does the work. Faust's public consumer API has no commit of chosen
        offsets, hence `_commit`, the driver method its own commits go through.
        """
        generation = app.consumer_generation_id
        tps = [tp for tp in app.consumer.assignment() if tp.topic == settings.events_topic]
        attempts = 0
        while True:
            try:
                starts = await processor.assigned([tp.partition for tp in tps])
                offsets = {TP(settings.events_topic, p): offset for p, offset in starts.items()}
                if offsets and not await cast(Consumer, app.consumer)._commit(offsets):
                    raise KafkaError("committing the start offsets failed (a rebalance began)")
                for tp, offset in offsets.items():
                    await app.consumer.seek(tp, offset)
                positioned.update(starts)
                processor.outage.recovered()
                log.info("assigned partitions start at %s", {tp.partition: o for tp, o in offsets.items()})
                return
            except (RedisError, OSError) as exc:
                delay = processor.outage.failed(exc)
            except (KafkaError, BrokerUnavailable, StoreError) as exc:
                delay = backoff_delay(attempts)
                log.warning("positioning the assigned partitions failed (%s); retrying in %.1fs", exc, delay)
            except Exception:  # not CancelledError: a stopping worker cancels this
                log.critical("unexpected error positioning the assigned partitions; exiting", exc_info=True)
                _exit("", 70)
            attempts += 1
            if app.consumer_generation_id != generation:
                return
            await asyncio.sleep(delay)
            if app.consumer_generation_id != generation:
                return

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == settings.events_topic:
                positioned.discard(tp.partition)
                processor.release(tp.partition)

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            """503 while the worker pauses on an unavailable Redis (it resumes on its own)."""
            if processor.outage.paused:
                body = {"status": "paused", "redis": f"unavailable for {processor.outage.seconds():.0f}s"}
                return self.json(body, status=503)
            return self.json({"status": "ready"})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp takes the charset separately from the media type.
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    return app
