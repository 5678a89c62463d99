"""`lifecycle audience export` and `publish`: an audience to a file or to a Kafka topic.

Both stream the walk chunk by chunk (`AudienceReader.stream`), so memory stays flat
whatever the audience's size.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from typing import IO, Any

import orjson
from kafka import KafkaProducer

from service.core.audience_events import audience_cloudevent
from service.core.audience_filters import AudienceFilter
from service.core.cloudevents import STRUCTURED_CONTENT_TYPE
from service.core.instants import iso_ms
from service.storage.audiences import AudienceReader

COLUMNS = ("user_id", "state", "channel", "stage", "segment", "last_active", "entered_at")


async def export(
    reader: AudienceReader, f: AudienceFilter, out: IO[bytes], fmt: str, progress: Callable[[int], None]
) -> int:
    """Write every user of the audience as CSV (header first) or JSON Lines; returns how many."""
    written = 0
    text = None
    if fmt == "csv":
        import io

        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
        writer.writeheader()
    async for _, users in reader.stream(f):
        if text is not None:
            writer.writerows(users)
        else:
            out.write(b"".join(orjson.dumps(u) + b"\n" for u in users))
        written += len(users)
        progress(len(users))
    if text is not None:
        text.flush()
        text.detach()
    out.flush()
    return written


class PublishFailed(RuntimeError):
    """Some audience events were not acknowledged by the broker."""


_HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE)]


async def publish(
    reader: AudienceReader,
    f: AudienceFilter,
    producer: KafkaProducer,
    topic: str,
    *,
    audience: str,
    campaign: str,
    source: str,
    type_prefix: str,
    progress: Callable[[int], None],
) -> int:
    """Send one CloudEvent per user (key: user id, so Kafka's partitioner puts it with the
    user's events partition); returns how many, after the broker acknowledged all of them."""
    sent = 0
    failures: list[Any] = []
    for_errors = failures.append
    async for clock, users in reader.stream(f):
        as_of = iso_ms(clock)
        for user in users:
            value = audience_cloudevent(user, audience, campaign, as_of, source, type_prefix)
            producer.send(topic, key=user["user_id"].encode(), value=value, headers=_HEADERS).add_errback(
                for_errors
            )
        sent += len(users)
        progress(len(users))
    producer.flush()
    if failures:
        raise PublishFailed(f"{len(failures)} of {sent} events not acknowledged: {failures[0]!r}")
    return sent


def open_output(path: str | None) -> IO[bytes]:
    return sys.stdout.buffer if path in (None, "-") else open(path, "wb")
