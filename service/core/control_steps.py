"""The batch steps of control messages and of ids that no longer take events.

`apply_events` hands over every event that is a control message (service.core.controls),
or belongs to a suppressed (erased) id or to an id merged into another. Each step changes
the batch's working state (`Working`) and result like the event steps do, so it is
committed with the batch, once.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import orjson

from service.core import counters as ctr
from service.core.batch_state import BatchResult, BatchRules, Working
from service.core.contributions import add_population
from service.core.controls import ERASE, MAX_HOPS, MERGE_IN, MERGE_OUT, RESTORE, control_message
from service.core.erasure import cancel_pending
from service.core.events import Event
from service.core.identity import fold, packed_fields, previous_id
from service.core.interval_lifecycle import credit as credit_intervals
from service.core.interval_lifecycle import withdraw as withdraw_intervals
from service.core.records import UserRecord


def control_step(
    ev: Event,
    work: Working,
    rules: BatchRules,
    out: BatchResult,
    blocked: set[str],
    merged: MutableMapping[str, str],
) -> None:
    """Apply one control event, or drop or send on an event its id cannot take."""
    uid = ev.user_id
    kind = ev.type
    if kind == ERASE:
        _erase(uid, work, rules, out)
        merged.pop(uid, None)  # an erased tombstone goes too
        blocked.add(uid)
    elif kind == RESTORE:
        out.counts[ctr.RESTORED] += 1
        blocked.discard(uid)
    elif uid in blocked:
        out.counts[ctr.SUPPRESSED] += 1
    elif kind == MERGE_OUT:
        _merge_out(ev, work, rules, out, merged)
    elif kind == MERGE_IN:
        _merge_in(ev, work, rules, out, merged)
    else:  # an event of an id merged into another: applied there
        doc = ev.to_json()
        doc["user_id"] = target = merged[uid]
        out.outgoing.append((target, orjson.dumps(doc)))
        out.counts[ctr.MERGED_EVENTS] += 1


def request_merge(ev: Event, out: BatchResult) -> None:
    """An alias (or identify) naming a previous id: ask that id's owner to merge it in."""
    prev = previous_id(ev)
    if prev is not None:
        value = control_message("merge_out", prev, ev.event_id, ev.ts, into=ev.user_id)
        out.outgoing.append((prev, value))


def _take_out(uid: str, rec: UserRecord, rules: BatchRules, out: BatchResult) -> None:
    """Out of every population count, interval count and index; the record goes."""
    add_population(rec, -1, rules.retention.days, rules.calendar, out.counts, out.sums)
    withdraw_intervals(rec, rules.calendar, out.counts)
    out.index_removals[rec.channel].append(uid)
    out.deleted.add(uid)


def _erase(uid: str, work: Working, rules: BatchRules, out: BatchResult) -> None:
    out.counts[ctr.ERASED] += 1
    rec = work.current(uid)
    out.deleted.add(uid)
    if rec is not None:
        cancel_pending(rec, out.counts)
        _take_out(uid, rec, rules, out)
        work.live[uid] = None


def _merge_out(
    ev: Event, work: Working, rules: BatchRules, out: BatchResult, merged: MutableMapping[str, str]
) -> None:
    """The anonymous id's owner: hand the record over to the known id's owner, leave a tombstone."""
    uid = ev.user_id
    into = str((ev.properties or {})["into"])
    if uid in merged or into == uid:
        out.counts[ctr.MERGES_IGNORED] += 1  # merged already (the first alias wins), or itself
        return
    rec = work.current(uid)
    record = None
    if rec is not None:
        record = packed_fields(rec)
        _take_out(uid, rec, rules, out)
        work.live[uid] = None
    request = ev.event_id.split(":", 1)[1]
    value = control_message("merge_in", into, request, ev.ts, **{"from": uid, "record": record, "hops": 0})
    out.outgoing.append((into, value))
    merged[uid] = into
    out.counts[ctr.MERGED_OUT] += 1


def _merge_in(
    ev: Event, work: Working, rules: BatchRules, out: BatchResult, merged: MutableMapping[str, str]
) -> None:
    """The known id's owner: fold the anonymous record in."""
    uid = ev.user_id
    props = ev.properties or {}
    fields, hops = props.get("record"), int(props.get("hops", 0))
    if uid in merged:  # the known id was itself merged on: the record follows it
        if hops >= MAX_HOPS:
            out.counts[ctr.MERGE_CYCLES] += 1
            return
        target = merged[uid]
        request = f"{ev.event_id.split(':', 1)[1]}/{hops + 1}"
        more = {"from": props["from"], "record": fields, "hops": hops + 1}
        out.outgoing.append((target, control_message("merge_in", target, request, ev.ts, **more)))
        return
    out.counts[ctr.MERGED_IN] += 1
    if fields is None:
        return  # the anonymous id had no record: only its later events come here
    anon = UserRecord.from_fields(fields)
    known = work.current(uid)
    c = rules.calendar
    if known is None:
        rec = anon
        out.channels.add(rec.channel)
    else:
        add_population(known, -1, rules.retention.days, c, out.counts, out.sums)
        withdraw_intervals(known, c, out.counts)
        rec = fold(known, anon, rules.funnel, rules.retention, rules.funnels, c)
        if rec.channel != known.channel:
            out.index_removals[known.channel].append(uid)
            out.channels.add(rec.channel)
    add_population(rec, 1, rules.retention.days, c, out.counts, out.sums)
    credit_intervals(rec, c, out.counts)
    work.live[uid] = rec
    work.dirty_active.add(uid)
    work.dirty_first.add(uid)
