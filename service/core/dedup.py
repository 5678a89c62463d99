"""De-duplication of events: which events count as the same, and how long that is remembered.

An event is identified by its id alone; the store keeps an 8-byte digest of each applied id,
in sets bucketed by the hour of the event's ts. A redelivered duplicate carries the same id
and ts, so it is looked up in exactly one bucket, and a bucket can expire as a whole once
the de-duplication window has passed over it. The storage layer only names these sets and
runs the commands.
"""

from __future__ import annotations

import hashlib

BUCKET_MS = 3_600_000  # one set per hour of event time


def event_digest(event_id: str) -> bytes:
    """An 8-byte digest of an event id: what the de-duplication sets store."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def dedup_bucket(ts_ms: int) -> int:
    """The hour of an event's ts (hours since the epoch): the set its id's digest goes in."""
    return ts_ms // BUCKET_MS


def bucket_ttl_s(window_s: int) -> int:
    """How long a bucket lives after its last write: the window, plus the bucket's own hour
    (its oldest digest was written up to an hour before the newest)."""
    return window_s + BUCKET_MS // 1000
