"""Erasure: an erased user leaves every population count and index exactly, and stays out."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events
from service.core.contributions import population
from service.core.controls import ERASE, RESTORE, control_event, control_message
from service.core.dedup import event_digest
from service.core.events import Event, decode_message, validate_event
from service.core.profile import Profile
from service.core.records import PendingTrigger, UserRecord
from tests import reference as ref
from tests.unit.test_batch_properties import PROFILE, T0
from tests.unit.test_named_funnels import PROFILE as FUNNELS_PROFILE

DAY = 86_400_000
POPULATION = (
    "users|",
    "stage|",
    "orders|",
    "payers|",
    "registered|",
    "cohort|",
    "ret|",
    "fn|",
    "fnc|",
    "lci|",
)
PROFILES = [PROFILE, FUNNELS_PROFILE]  # the second with named funnels, in Paris time


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events of a few users, with erase and restore requests among them."""
    n = draw(st.integers(1, 40))
    ts = T0
    out: list[Event] = []
    for i in range(n):
        ts += draw(st.sampled_from([0, 3_600_000, DAY, 4 * DAY, 10 * DAY]))
        uid = draw(st.sampled_from(["a", "b", "c"]))
        kind = draw(st.sampled_from(["visit", "register", "verify", "order", "order", "erase", "restore"]))
        if kind in ("erase", "restore"):
            out.append(Event(f"{kind}:r{i}", uid, ERASE if kind == "erase" else RESTORE, ts))
            continue
        channel = draw(st.sampled_from([None, "ads", "organic"]))
        amount = 10.0 if kind == "order" else None
        eid = draw(st.sampled_from([f"e{i}", f"e{max(i - 1, 0)}"]))
        out.append(Event(eid, uid, kind, ts, channel, amount))
    return out


def _dicts(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        if ev.type in (ERASE, RESTORE):
            out.append({"control": "erase" if ev.type == ERASE else "restore", "user_id": ev.user_id})
        else:
            out.append(ev.to_json())
    return out


class Partition:
    """The store of one partition as the commit leaves it: records, suppression, an index."""

    def __init__(self, profile: Profile = PROFILE) -> None:
        self.profile = profile
        self.records: dict[str, UserRecord] = {}
        self.suppressed: set[str] = set()
        self.active: dict[str, set[str]] = {}
        self.due: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.sums: Counter[str] = Counter()
        self.seen: set[bytes] = set()

    def apply(self, events: list[Event], swept: int) -> None:
        fresh = []
        for ev in events:
            digest = event_digest(ev.event_id)
            if digest not in self.seen:
                self.seen.add(digest)
                fresh.append(ev)
        result = apply_events(self.records, fresh, swept, self.profile, None, self.suppressed)
        for uid in result.deleted:
            self.records.pop(uid, None)  # HDEL: a user never stored is no error
        self.records.update(result.records)
        self.suppressed = (self.suppressed - result.unsuppress) | result.suppress
        for channel, members in result.index_removals.items():
            self.active.get(channel, set()).difference_update(members)
        for channel, scores in result.active_index.items():
            self.active.setdefault(channel, set()).update(scores)
        for uid, due in result.due_index.items():
            (self.due.add if due is not None else self.due.discard)(uid)
        self.counts.update(result.counts)
        self.sums.update(result.sums)


def population_counts(counts: Counter[str]) -> dict[str, int]:
    """The population counters of `counts` (what a user adds to the totals), without zeros."""
    return {k: v for k, v in counts.items() if k.startswith(POPULATION) and v}


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(0, 100), max_size=5), st.sampled_from(PROFILES))
def test_an_erased_user_leaves_every_population_count_as_if_never_seen(
    events: list[Event], cuts: list[int], profile: Profile
) -> None:
    part = Partition(profile)
    bounds = [0, *sorted(c % (len(events) + 1) for c in cuts), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        part.apply(events[lo:hi], T0)
    kept = ref.without_erased(_dicts(events))
    users = ref.reference(kept, profile)
    assert set(part.records) == set(users)
    # the same totals as a partition that only ever saw the surviving events
    clean = Partition(profile)
    clean.apply([e for e in (validate_event(d) for d in kept) if isinstance(e, Event)], T0)
    assert population_counts(part.counts) == population_counts(clean.counts)
    assert {k: round(v, 6) for k, v in part.sums.items() if round(v, 6)} == {
        k: round(v, 6) for k, v in clean.sums.items() if round(v, 6)
    }
    # and as the reference: users, stages and orders per channel
    for uid, want in users.items():
        assert part.records[uid].stage == ref.stage_of(want, profile)
    assert sum(v for k, v in part.counts.items() if k.startswith("users|")) == len(users)
    assert sum(v for k, v in part.counts.items() if k.startswith("orders|")) == sum(
        u.orders for u in users.values()
    )
    # the index holds exactly the live users, each under its channel
    assert {(ch, u) for ch, members in part.active.items() for u in members} == {
        (rec.channel, uid) for uid, rec in part.records.items()
    }
    assert part.due <= set(part.records)
    # the suppression list: users whose last request was an erase
    last: dict[str, str] = {}
    for ev in events:
        if ev.type in (ERASE, RESTORE):
            last[ev.user_id] = ev.type
    assert part.suppressed == {u for u, kind in last.items() if kind == ERASE}


def test_events_of_an_erased_id_are_dropped_and_counted_until_a_restore() -> None:
    part = Partition()
    part.apply([Event("1", "u", "visit", T0), Event("erase:r1", "u", ERASE, T0)], T0)
    assert part.records == {} and part.counts["erasures"] == 1 and part.counts["users|-"] == 0
    part.apply([Event("2", "u", "order", T0 + DAY, amount=5.0)], T0)
    assert part.records == {} and part.counts["suppressed_events"] == 1
    part.apply([Event("restore:r2", "u", RESTORE, T0), Event("3", "u", "visit", T0 + 2 * DAY)], T0)
    assert part.records["u"].first_seen == T0 + 2 * DAY  # a new user: nothing of before came back
    assert part.counts["users|-"] == 1 and part.counts["orders|-"] == 0 and part.suppressed == set()


def test_erasure_cancels_pending_triggers_and_counts_them() -> None:
    part = Partition()
    part.apply([Event("1", "u", "visit", T0), Event("2", "u", "order", T0 + 1, amount=3.0)], T0)
    part.records["u"].pending = [PendingTrigger(T0 + 30 * DAY, "t1", "recall", T0, {"state": "silent"})]
    part.due.add("u")
    part.apply([Event("erase:r", "u", ERASE, T0 + 2)], T0)
    assert "u" not in part.due
    assert part.counts["tg|recall|-|cancelled"] == 1 and part.counts["tgr|silent|-|cancelled"] == 1


def test_control_messages_round_trip_and_only_the_control_decoder_reads_them() -> None:
    raw = control_message("erase", "user/1", "req-1", T0)
    events, rejected = decode_message(raw, control=control_event)
    assert rejected == [] and events == [Event("erase:req-1", "user/1", ERASE, T0)]
    # without the worker's control decoder (every producer-facing intake), it is no event
    events, rejected = decode_message(raw)
    assert events == [] and "unknown field" in rejected[0].reason


@pytest.mark.parametrize("etype", [ERASE, RESTORE, "$lifecycle_anything"])
def test_no_event_may_carry_a_reserved_type(etype: str) -> None:
    reason = validate_event({"event_id": "1", "user_id": "u", "type": etype, "ts": T0})
    assert isinstance(reason, str) and "reserved" in reason


@pytest.mark.parametrize(
    "doc",
    [
        {"control": "delete", "user_id": "u", "request_id": "r", "ts": 1},
        {"control": "erase", "user_id": "", "request_id": "r", "ts": 1},
        {"control": "erase", "user_id": "u", "request_id": "r", "ts": "soon"},
        {"control": "erase", "user_id": "u", "request_id": "r", "ts": 1, "extra": 1},
    ],
)
def test_malformed_control_messages_are_rejected_with_a_reason(doc: dict[str, Any]) -> None:
    assert isinstance(control_event(doc), str)


def test_population_lists_what_a_user_adds() -> None:
    rec = apply_events(
        {}, [Event("1", "u", "register", T0, "ads"), Event("2", "u", "order", T0, amount=2.0)], T0, PROFILE
    )
    counted = dict(population(rec.records["u"], PROFILE.retention_days, PROFILE.calendar))
    assert counted["users|ads"] == 1 and counted["orders|ads"] == 1 and counted["payers|ads"] == 1
    assert counted["registered|ads"] == 1


def test_erasures_and_dropped_events_reach_the_worker_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from service.worker.metrics import WorkerMetrics

    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    part = Partition()
    part.apply(
        [Event("1", "u", "visit", T0), Event("erase:r", "u", ERASE, T0), Event("2", "u", "visit", T0)], T0
    )
    metrics.record_counts(part.counts)
    assert registry.get_sample_value("lifecycle_erasures_total", {"action": "erase"}) == 1
    assert registry.get_sample_value("lifecycle_events_total", {"outcome": "suppressed"}) == 1
