"""Identity merging: an anonymous visitor's record folded into the known user's.

An `alias` event (or an `identify`) naming `properties.previous_id` says two ids are one
person. The two usually live on different partitions, owned by different workers, and
each worker changes only its own partitions' records inside its fenced commit. So the
merge is two control messages (service.core.controls), each applied once by the owner of
the record it changes (docs/identity.md draws the exchange):

1. the alias's owner sends `merge_out` to the anonymous id's owner;
2. that owner takes the anonymous user out of every count and index, leaves a tombstone
   (`{"merged_into": known}`) in its place and sends its packed record as `merge_in` to
   the known id's owner;
3. that owner folds the record into the known user's (`fold`).

Later events of the anonymous id find the tombstone and are re-sent under the known id.
"""

from __future__ import annotations

from typing import Any

import orjson

from service.core.calendar import Calendar
from service.core.events import MAX_ID_LEN, Event
from service.core.funnel import furthest_stage
from service.core.named_funnels import FunnelPlan
from service.core.profile import FunnelStage
from service.core.records import NO_CHANNEL, UserRecord
from service.core.retention import RetentionRule
from service.core.triggers import RECENT_KEPT

IDENTITY_TYPES = frozenset({"alias", "identify"})
_TOMBSTONE = b'{"merged_into":'


def previous_id(ev: Event) -> str | None:
    """The id an alias or identify event merges into its user, if it names a valid other one."""
    if ev.type not in IDENTITY_TYPES or not ev.properties:
        return None
    prev = ev.properties.get("previous_id")
    if isinstance(prev, str) and 0 < len(prev) <= MAX_ID_LEN and prev != ev.user_id:
        return prev
    return None


def tombstone(known: str) -> bytes:
    """What stays in the users hash under a merged id."""
    return orjson.dumps({"merged_into": known})


def merged_into(raw: bytes) -> str | None:
    """The id a stored value says its user was merged into, or None for a record."""
    if raw[:15] != _TOMBSTONE:
        return None
    target = orjson.loads(raw).get("merged_into")
    return target if isinstance(target, str) else None


def fold(
    known: UserRecord,
    anon: UserRecord,
    funnel: tuple[FunnelStage, ...],
    retention: RetentionRule,
    funnels: FunnelPlan | None,
    calendar: Calendar,
) -> UserRecord:
    """One user from two: the earliest first sight, the latest activity, orders, revenue and
    per-type counts summed (the stage recomputed from them), the days active of both (for
    retention and intervals, re-based on the earlier first day), the earliest funnel times,
    both users' triggers, and the channel of whoever was seen first (a named channel wins
    over none, as a user first seen without one moves to it)."""
    first, other = (anon, known) if anon.first_seen < known.first_seen else (known, anon)
    base = calendar.day(first.first_seen)
    counts = dict(known.counts)
    for kind, n in anon.counts.items():
        counts[kind] = counts.get(kind, 0) + n
    days = 0
    active = 0
    for rec in (known, anon):
        shift = calendar.day(rec.first_seen) - base
        days |= (rec.days | retention.credited_days(rec.retained)) << shift
        active |= rec.active_days << shift
    days &= retention.mask
    firsts: dict[str, list[int]] = {}
    for etype in known.firsts.keys() | anon.firsts.keys():
        keep = funnels.keep.get(etype, 1) if funnels is not None else 1
        firsts[etype] = sorted([*known.firsts.get(etype, ()), *anon.firsts.get(etype, ())])[:keep]
    pending = sorted({p.id: p for p in (*anon.pending, *known.pending)}.values(), key=lambda p: (p.due, p.id))
    recent = [r for r in anon.recent if r.id not in {k.id for k in known.recent}] + known.recent
    recent.sort(key=lambda r: r.at)
    return UserRecord(
        first_seen=first.first_seen,
        last_active=max(known.last_active, anon.last_active),
        seen_until=max(known.seen_until, anon.seen_until),
        channel=first.channel if first.channel != NO_CHANNEL else other.channel,
        stage=furthest_stage(counts, funnel),
        orders=known.orders + anon.orders,
        revenue=known.revenue + anon.revenue,
        counts=counts,
        retained=retention.retained_of(days),
        pending=pending,
        sent=sorted({*known.sent, *anon.sent}),  # pruned to the cap's window at the next send
        policies={**anon.policies, **known.policies},
        recent=recent[-RECENT_KEPT:],
        onboarding=min((t for t in (known.onboarding, anon.onboarding) if t), default=0),
        days=days,
        traits={**anon.traits, **known.traits},
        firsts=firsts,
        active_days=active,
    )


def packed_fields(rec: UserRecord) -> list[Any]:
    """The record as the JSON array a `merge_in` message carries."""
    fields: list[Any] = orjson.loads(rec.pack())
    return fields
