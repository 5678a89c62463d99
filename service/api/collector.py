"""The HTTP collector: events over HTTP into the events topic, durable before the answer.

`POST /v1/events` takes one canonical event or a JSON array of them, validates each
with the worker's own rules, writes the valid ones as envelopes (grouped by partition)
and answers only after the broker acknowledged them with `acks=all`. Rejected events
are listed by index with their reason; they never hold back their neighbours.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.core.envelopes import envelopes
from service.core.events import TimeBounds, validate_event
from service.core.partitioning import partition_for
from service.kafka.options import aiokafka_options
from service.settings import Settings


class CollectorError(Exception):
    """A request the collector refuses as a whole, with the HTTP status to answer."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Collected:
    accepted: int
    rejected: list[dict[str, Any]]
    messages: int


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The request body, gunzipped if needed, never more than `max_bytes` (zip bombs included)."""
    if len(body) > max_bytes:
        raise CollectorError(413, f"request body is over {max_bytes} bytes")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise CollectorError(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise CollectorError(400, f"body is not valid gzip: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise CollectorError(413, f"decompressed body is over {max_bytes} bytes")
    return out


def validate_batch(
    body: bytes, max_events: int, bounds: TimeBounds
) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Valid events as `(user_id, JSON bytes)` and the rejected ones as `{index, reason}`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CollectorError(400, f"body is not JSON: {exc}") from exc
    if isinstance(doc, dict):
        docs = [doc]
    elif isinstance(doc, list):
        docs = doc
    else:
        raise CollectorError(400, "body must be an event object or an array of events")
    if not docs:
        raise CollectorError(400, "no events in the body")
    if len(docs) > max_events:
        raise CollectorError(413, f"{len(docs)} events in one request; at most {max_events}")
    return sort_events(docs, bounds, keep_bytes=True)


class Rejection(NamedTuple):
    """Why an item of a request maps to no event, found before validation (a tracking
    message of no known kind): a type of its own, so a string sent as an item is never
    taken for a reason."""

    reason: str


def sort_events(
    docs: list[Any], bounds: TimeBounds, *, keep_bytes: bool
) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """Each item validated: `(user_id, JSON bytes)` if it is an event, `{index, reason}` if
    not. An item may be a `Rejection` already. `keep_bytes`: forward the document as sent;
    otherwise the canonical event, encoded again."""
    accepted: list[tuple[str, bytes]] = []
    rejected: list[dict[str, Any]] = []
    for i, item in enumerate(docs):
        if isinstance(item, Rejection):
            checked: Any = item.reason
        else:
            checked = validate_event(item, bounds) if isinstance(item, dict) else "not a JSON object"
        if isinstance(checked, str):
            rejected.append({"index": i, "reason": checked})
        else:
            accepted.append((checked.user_id, orjson.dumps(item if keep_bytes else checked.to_json())))
    return accepted, rejected


class Collector:
    """Owns the API process's Kafka producer, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **aiokafka_options(self.settings),
                    acks="all",
                    linger_ms=2,
                    max_batch_size=1 << 20,
                    max_request_size=8 << 20,
                    request_timeout_ms=int(self.settings.collector_timeout * 1000),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.settings.collector_timeout)
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise CollectorError(503, f"Kafka is unreachable: {exc!r}", retry_after=5) from exc
                self._producer = producer
            return self._producer

    async def collect(self, body: bytes, content_encoding: str | None) -> Collected:
        s = self.settings
        raw = decode_body(body, content_encoding, s.collector_max_bytes)
        bounds = s.time_bounds(int(time.time() * 1000))
        accepted, rejected = validate_batch(raw, s.collector_max_events, bounds)
        return await self.send(accepted, rejected)

    async def send(self, accepted: list[tuple[str, bytes]], rejected: list[dict[str, Any]]) -> Collected:
        """Write validated events as envelopes and wait for `acks=all`; shared by every intake."""
        s = self.settings
        too_big = next(
            (i for i, (_, raw) in enumerate(accepted) if len(raw) + 2 > s.envelope_max_bytes), None
        )
        if too_big is not None:
            raise CollectorError(
                413,
                f"an event of {len(accepted[too_big][1])} bytes is over the envelope limit of "
                f"{s.envelope_max_bytes} bytes (LIFECYCLE_ENVELOPE_MAX_BYTES)",
            )
        messages = list(
            envelopes(accepted, s.partitions, s.collector_max_events, max_bytes=s.envelope_max_bytes)
        )
        if messages:
            producer = await self._ready_producer()
            try:
                futures = [
                    await producer.send(s.events_topic, value=value, key=key, partition=p)
                    for p, key, value in messages
                ]
                await asyncio.wait_for(asyncio.gather(*futures), s.collector_timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise CollectorError(
                    503, f"the broker did not acknowledge the events: {exc!r}", retry_after=5
                ) from exc
        return Collected(len(accepted), rejected, len(messages))

    async def send_control(self, user_id: str, value: bytes) -> None:
        """Write one control message to the partition of `user_id` and wait for `acks=all`."""
        s = self.settings
        producer = await self._ready_producer()
        try:
            sent = await producer.send(
                s.events_topic,
                value=value,
                key=user_id.encode(),
                partition=partition_for(user_id, s.partitions),
            )
            await asyncio.wait_for(sent, s.collector_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise CollectorError(
                503, f"the broker did not acknowledge the request: {exc!r}", retry_after=5
            ) from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
