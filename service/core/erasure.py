"""Erasing a user, and the control messages that ask for it.

An erasure must be applied by the worker that owns the user's partition, in order with
the user's events and inside its fenced commit, or a batch in flight could write the user
back. So it travels as a *control message* on the events topic, keyed by the user id like
their events: `{"control": "erase", "user_id": ..., "request_id": ..., "ts": ...}` (or
`"restore"`). Decoded, it is an `Event` of a reserved type that no producer of events can
send (`service.core.events.validate_event` refuses those types), so only whoever can write
to the topic itself, the service's own API and CLI, can erase.

Applied, an erasure removes the user from every population count (users, stages,
orders, payers, registrations, revenue, cohorts, retention), every index (so from the
lifecycle counts and every audience) and cancels its pending triggers; the record is
deleted and a digest of the id goes on the partition's suppression list, so later events
of the id are dropped and counted until a restore lifts it. The anonymous flow counts
(events by type, transitions, return gaps, time to convert, trigger statuses) stay: they
say that something happened, not who did it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson

from service.core import counters as ctr
from service.core.events import MAX_ID_LEN, RESERVED_TYPE_PREFIX, Event
from service.core.records import UserRecord

ERASE = RESERVED_TYPE_PREFIX + "erase"
RESTORE = RESERVED_TYPE_PREFIX + "restore"
CONTROL_TYPES = frozenset({ERASE, RESTORE})
_KINDS = {"erase": ERASE, "restore": RESTORE}
_NAMES = {v: k for k, v in _KINDS.items()}
_CONTROL_FIELDS = frozenset({"control", "user_id", "request_id", "ts"})


def control_message(kind: str, user_id: str, request_id: str, ts: int) -> bytes:
    """The message value that asks the owner of `user_id` to `erase` or `restore` it."""
    if kind not in _KINDS:
        raise ValueError(f"control kind {kind!r} is neither 'erase' nor 'restore'")
    return orjson.dumps({"control": kind, "user_id": user_id, "request_id": request_id, "ts": ts})


def control_event(doc: dict[str, Any]) -> Event | str:
    """The control message `doc` as an event of a reserved type, or why it is not one."""
    extra = doc.keys() - _CONTROL_FIELDS
    if extra:
        return f"control message: unknown field(s): {', '.join(sorted(str(k)[:40] for k in extra)[:5])}"
    kind = _KINDS.get(doc.get("control"))  # type: ignore[arg-type]
    if kind is None:
        return "control message: control must be 'erase' or 'restore'"
    user_id, request_id, ts = doc.get("user_id"), doc.get("request_id"), doc.get("ts")
    for name, value in (("user_id", user_id), ("request_id", request_id)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LEN:
            return f"control message: {name} must be a string of 1..{MAX_ID_LEN} characters"
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 1 << 53:
        return "control message: ts must be epoch milliseconds"
    assert isinstance(user_id, str) and isinstance(request_id, str)
    return Event(f"{doc['control']}:{request_id}", user_id, kind, ts)


def as_control_json(ev: Event) -> dict[str, Any]:
    """A control event back in its message form (to re-route it to its owner)."""
    return {
        "control": _NAMES[ev.type],
        "user_id": ev.user_id,
        "request_id": ev.event_id.split(":", 1)[1],
        "ts": ev.ts,
    }


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
