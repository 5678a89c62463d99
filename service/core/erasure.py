"""Erasing a user: what is left of them, and what stays out.

An erasure must be applied by the worker that owns the user's partition, in order with
the user's events and inside its fenced commit, or a batch in flight could write the user
back. So it travels as an `erase` control message on the events topic
(service.core.controls), keyed by the user id like their events; only the service's own
API and CLI write those.

Applied, an erasure removes the user from every population count (users, stages,
orders, payers, registrations, revenue, cohorts, retention, named funnels, lifecycle per
interval), every index (so from the lifecycle counts and every audience) and cancels its
pending triggers; the record is
deleted and a digest of the id goes on the partition's suppression list, so later events
of the id are dropped and counted until a restore lifts it. The anonymous flow counts
(events by type, transitions, return gaps, time to convert, trigger statuses) stay: they
say that something happened, not who did it.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from service.core import counters as ctr
from service.core.records import UserRecord


def suppression_digest(user_id: str) -> bytes:
    """What the suppression list stores for an erased id: a 16-byte digest, not the id."""
    return hashlib.blake2b(user_id.encode(), digest_size=16, person=b"lc-erased").digest()


def cancel_pending(rec: UserRecord, counts: Counter[str]) -> None:
    """Cancel the user's scheduled triggers: counted as cancelled, never sent."""
    for p in rec.pending:
        counts[ctr.trigger(p.kind, rec.channel, "cancelled")] += 1
        if p.kind == "recall" and p.extra.get("state"):
            counts[ctr.recall(str(p.extra["state"]), rec.channel, "cancelled")] += 1
    rec.pending = []
