"""What the worker sends to the broker itself, and the port it sends it through.

Dead letters and re-routed events are acknowledged before the batch commits (a crash
can send them twice, never lose them); outbox entries are relayed after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from service.core.events import Event
from service.core.intake import DeadLetter

OUTBOX_HEADER = "x-outbox-id"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the worker must get acknowledged before it commits."""

    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Sink(Protocol):
    async def send_and_wait(self, messages: Sequence[Outgoing]) -> None: ...

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        """Values of `header` on the partition's most recent messages (the relay's position)."""
        ...


def dead_letter(dlq_topic: str, events_topic: str, partition: int, dead: DeadLetter) -> Outgoing:
    """The rejected bytes, with why and where from in headers (the reason bounded)."""
    bad = dead.rejected
    headers = [
        ("x-error-reason", bad.reason.encode()[:1000]),
        ("x-source-topic", events_topic.encode()),
        ("x-source-partition", str(partition).encode()),
        ("x-source-offset", str(dead.offset).encode()),
    ]
    if bad.index is not None:
        headers.append(("x-envelope-index", str(bad.index).encode()))
    return Outgoing(dlq_topic, bad.raw, dead.key, None, headers)


def rerouted(events_topic: str, partition: int, target: int, events: list[Event]) -> Outgoing:
    """One envelope of events that `target` owns, marked with the partition they came from."""
    return Outgoing(
        events_topic,
        orjson.dumps([e.to_json() for e in events]),
        events[0].user_id.encode(),
        target,
        [("x-rerouted-from", str(partition).encode())],
    )
