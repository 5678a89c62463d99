"""The worker's Faust app: one agent on the events topic, one sweep timer, /metrics.

Only configuration and wiring live here. Batches go to `service.worker.agent.Agent`,
rebalances to `service.worker.rebalance.Rebalance`; reading, applying and committing
happen in `service.worker.processor.PartitionProcessor`.
"""

from __future__ import annotations

import socket
from typing import Any, cast

import faust
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.kafka.options import faust_credentials, kafka_python_options
from service.settings import Settings
from service.storage.client import AnyRedis, redis_client
from service.storage.store import RedisStore
from service.worker.agent import Agent
from service.worker.faust_adapters import FaustConsumer, FaustSink
from service.worker.metrics import WorkerMetrics
from service.worker.partition import Partitions
from service.worker.processor import PartitionProcessor
from service.worker.rebalance import Rebalance
from service.worker.topic_identity import TopicIdentity


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
        broker_heartbeat_interval=settings.heartbeat_interval,
        consumer_metadata_max_age_ms=int(settings.metadata_max_age * 1000),
        logging_config=None,
        datadir=settings.worker_data_dir,
    )
    # Timeouts turn a Redis that hangs (stopped, partitioned) into errors the processor backs off on.
    redis = redis or redis_client(
        settings,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=min(settings.redis_timeout, 5.0),
    )
    partitions = Partitions()
    processor = PartitionProcessor(
        RedisStore(redis, settings.key_prefix, settings.dedup_window_s),
        FaustSink(app, settings),
        settings,
        settings.loaded_profile,
        WorkerMetrics(max_channels=settings.metrics_max_channels),
        # Positioned since the last revocation, not the consumer's assignment: during a
        # rebalance that still lists partitions already revoked.
        is_assigned=partitions.is_positioned,
        log_id=TopicIdentity(
            settings.bootstrap_servers, settings.events_topic, kafka_python_options(settings)
        ),
        partitions=partitions,
        # A fenced worker that still thinks it owns the partition may have slept through its
        # session: two heartbeats let its revocation arrive before it claims back.
        reclaim_hold=2 * settings.heartbeat_interval,
    )
    app.processor = processor  # type: ignore[attr-defined]
    consumer = FaustConsumer(app, settings.events_topic)
    rebalance = Rebalance(processor, consumer)
    agent = Agent(processor, rebalance, consumer, settings.relay_batch)
    events = app.topic(settings.events_topic, partitions=settings.partitions)

    @app.agent(events)
    async def apply(stream: faust.StreamT[bytes]) -> None:
        async for batch in cast(faust.Stream[bytes], stream).take_events(
            settings.batch_messages, within=settings.batch_wait
        ):
            await agent.batch(event.message for event in batch)

    @app.timer(interval=settings.sweep_interval)
    async def sweep_owned() -> None:
        await agent.tick()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def start_from_redis(sender: Any, **kwargs: Any) -> None:
        # Faust seeks to the broker's committed offsets right after this signal.
        await rebalance.assigned()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        rebalance.revoked(tp.partition for tp in revoked if tp.topic == settings.events_topic)

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
