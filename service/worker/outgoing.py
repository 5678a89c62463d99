"""What the worker sends to the broker itself, and the port it sends it through.

Dead letters and re-routed events are acknowledged before the batch commits (a crash
can send them twice, never lose them); outbox entries are relayed after it. Each fits
under `LIFECYCLE_ENVELOPE_MAX_BYTES`: a rejected message over it goes to the dead-letter
topic as a reference (its first 64 KiB, its size and why it was rejected), and a
misrouted group is re-sent in envelopes cut to fit. A message bigger than a topic or a
producer takes is refused on every retry, so it would stall its partition for ever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from service.core.controls import CONTROL_TYPES, as_control_json
from service.core.envelopes import TOO_LARGE_KEEP_BYTES, join_envelope, split_values
from service.core.events import Event
from service.core.intake import DeadLetter
from service.core.partitioning import partition_for

OUTBOX_HEADER = "x-outbox-id"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the worker must get acknowledged before it commits."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    origin: str = ""  # where it comes from, for the log when it cannot be delivered


class Sink(Protocol):
    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        """Send and await every ack. Returns the messages refused for good, with the error;
        raises on an error a retry may cure."""
        ...

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        """Values of `header` on the partition's most recent messages (the relay's position)."""
        ...


def dead_letter(
    dlq_topic: str, events_topic: str, partition: int, dead: DeadLetter, max_bytes: int
) -> Outgoing:
    """The rejected bytes, with why and where from in headers (the reason bounded); over
    `max_bytes`, a reference: the first 64 KiB, the size and the reason it was rejected."""
    bad = dead.rejected
    reason = bad.reason.encode()[:1000]
    value = bad.raw
    headers = [
        ("x-source-topic", events_topic.encode()),
        ("x-source-partition", str(partition).encode()),
        ("x-source-offset", str(dead.offset).encode()),
    ]
    if len(value) > max_bytes:
        headers += [
            ("x-error-reason", b"too_large"),
            ("x-original-size", str(len(value)).encode()),
            ("x-original-reason", reason),
        ]
        value = value[:TOO_LARGE_KEEP_BYTES]
    else:
        headers.append(("x-error-reason", reason))
    if bad.index is not None:
        headers.append(("x-envelope-index", str(bad.index).encode()))
    origin = f"partition {partition} offset {dead.offset}"
    return Outgoing(dlq_topic, value, dead.key, None, headers, origin)


def as_reference(message: Outgoing) -> Outgoing | None:
    """A dead letter a topic refused as too large, as a reference: its first 64 KiB, its
    size and its reason in headers. None if it is not a dead letter or already one."""
    headers = dict(message.headers)
    reason = headers.get("x-error-reason")
    if reason is None or reason == b"too_large" or len(message.value) <= TOO_LARGE_KEEP_BYTES:
        return None
    kept = [(k, v) for k, v in message.headers if k != "x-error-reason"]
    kept += [
        ("x-error-reason", b"too_large"),
        ("x-original-size", str(len(message.value)).encode()),
        ("x-original-reason", reason),
    ]
    value = message.value[:TOO_LARGE_KEEP_BYTES]
    return Outgoing(message.topic, value, message.key, message.partition, kept, message.origin)


def rerouted(
    events_topic: str, partition: int, target: int, events: list[Event], max_bytes: int
) -> list[Outgoing]:
    """Envelopes of events that `target` owns, each under `max_bytes`, marked with the
    partition they came from."""
    values = [orjson.dumps(as_control_json(e) if e.type in CONTROL_TYPES else e.to_json()) for e in events]
    out = []
    start = 0
    for run in split_values(values, len(values), max_bytes):
        first = events[start]
        start += len(run)
        out.append(
            Outgoing(
                events_topic,
                join_envelope(run),
                first.user_id.encode(),
                target,
                [("x-rerouted-from", str(partition).encode())],
                f"partition {partition}, misrouted to {target}",
            )
        )
    return out


def sent_on(
    events_topic: str, partition: int, partitions: int, messages: list[tuple[str, bytes]]
) -> list[Outgoing]:
    """Messages a batch sends to the owners of other ids (identity merges, events of merged
    ids), each to the partition of its key, marked with the partition they came from."""
    return [
        Outgoing(
            events_topic,
            value,
            key.encode(),
            partition_for(key, partitions),
            [("x-sent-from", str(partition).encode())],
            f"partition {partition}, for the owner of another id",
        )
        for key, value in messages
    ]
