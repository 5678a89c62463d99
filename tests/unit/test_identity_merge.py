"""Identity merges across partitions: the merged user is the user of the history in which
the anonymous id was the known one all along, and the anonymous id counts nowhere.

The partitions are simulated the way the workers run them: each applies batches of its own
queue, and whatever a batch sends (merge requests, merged records, events of merged ids)
joins the queue of the partition that owns its key, to be applied whenever that partition
gets to it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.batch import apply_events
from service.core.controls import control_event
from service.core.dedup import event_digest
from service.core.events import Event, validate_event
from service.core.identity import fold
from service.core.partitioning import partition_for
from service.core.profile import Profile
from service.core.records import UserRecord
from tests.unit.test_batch_properties import PROFILE, T0
from tests.unit.test_erasure import population_counts as _population
from tests.unit.test_named_funnels import PROFILE as FUNNELS_PROFILE

DAY = 86_400_000
PARTITIONS = 3
CHANNELS = {"a0": None, "a1": "ads", "a2": None, "k0": "seo", "k1": None, "k2": "ads"}  # one per user


class Partitions:
    """Several partitions of one topic, each with its store and its queue of messages."""

    def __init__(self, profile: Profile, partitions: int = PARTITIONS) -> None:
        self.profile = profile
        self.n = partitions
        self.queues: list[list[Event]] = [[] for _ in range(partitions)]
        self.records: list[dict[str, UserRecord]] = [{} for _ in range(partitions)]
        self.merged: list[dict[str, str]] = [{} for _ in range(partitions)]
        self.seen: list[set[bytes]] = [set() for _ in range(partitions)]
        self.counts: Counter[str] = Counter()
        self.sums: Counter[str] = Counter()

    def send(self, key: str, value: bytes) -> None:
        doc = orjson.loads(value)
        ev = control_event(doc) if "control" in doc else validate_event(doc)
        assert isinstance(ev, Event), ev
        self.queues[partition_for(key, self.n)].append(ev)

    def step(self, p: int, size: int) -> None:
        batch, self.queues[p] = self.queues[p][:size], self.queues[p][size:]
        fresh = []
        for ev in batch:
            digest = event_digest(ev.event_id)
            if digest not in self.seen[p]:
                self.seen[p].add(digest)
                fresh.append(ev)
        result = apply_events(self.records[p], fresh, T0, self.profile, None, (), self.merged[p])
        for uid in result.deleted:
            self.records[p].pop(uid, None)
        self.records[p].update(result.records)
        self.merged[p].update(result.tombstones)
        for uid in result.deleted:
            if uid not in result.tombstones:
                self.merged[p].pop(uid, None)
        self.counts.update(result.counts)
        self.sums.update(result.sums)
        for key, value in result.outgoing:
            self.send(key, value)

    def drain(self, order: list[int]) -> None:
        i = 0
        while any(self.queues):
            choice = order[i % len(order)] if order else 0
            i += 1
            p = next(q % self.n for q in range(choice, choice + self.n) if self.queues[q % self.n])
            self.step(p, 1 + order[i % len(order)] % 4 if order else 3)

    def users(self) -> dict[str, UserRecord]:
        return {u: r for part in self.records for u, r in part.items()}


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Anonymous ids a0..a2 and known ids k0..k2, each with one channel (or none), in time
    order; aliases name an anonymous id as the previous id of its known one."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    ts = T0
    for i in range(draw(st.integers(1, 40))):
        ts += draw(st.sampled_from([0, 3_600_000, DAY, 3 * DAY, 9 * DAY]))
        kind = draw(st.sampled_from(["visit", "register", "verify", "order", "alias", "alias"]))
        if kind == "alias":
            # one known id per anonymous one: which of two aliases wins would depend on which
            # request reaches the anonymous id's owner first (test_the_first_request_wins)
            n = draw(st.sampled_from("012"))
            known, anon = f"k{n}", f"a{n}"
            out.append(
                {
                    "event_id": f"e{i}",
                    "user_id": known,
                    "type": "alias",
                    "ts": ts,
                    "properties": {"previous_id": anon},
                }
            )
            continue
        uid = draw(st.sampled_from(sorted(CHANNELS)))
        if uid not in seen:  # a user's first event is an activity: before it, events are dropped
            kind = "visit"
            seen.add(uid)
        ev: dict[str, Any] = {"event_id": f"e{i}", "user_id": uid, "type": kind, "ts": ts}
        if CHANNELS[uid]:
            ev["channel"] = CHANNELS[uid]
        if kind == "order":
            ev["amount"] = 10.0
        out.append(ev)
    return out


def as_if_known_all_along(history: list[dict[str, Any]]) -> list[Event]:
    """The history with every anonymous id replaced by the known id of its first alias."""
    into: dict[str, str] = {}
    for ev in history:
        if ev["type"] == "alias":
            into.setdefault(ev["properties"]["previous_id"], ev["user_id"])
    out = []
    for raw in history:
        ev = validate_event({**raw, "user_id": into.get(raw["user_id"], raw["user_id"])})
        assert isinstance(ev, Event)
        out.append(ev)
    return out


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(0, 50), max_size=12), st.sampled_from([PROFILE, FUNNELS_PROFILE]))
def test_a_merged_user_is_the_user_the_known_id_would_have_been_all_along(
    history: list[dict[str, Any]], order: list[int], profile: Profile
) -> None:
    parts = Partitions(profile)
    for raw in history:
        parts.send(raw["user_id"], orjson.dumps(raw))
    parts.drain(order)
    clean = Partitions(profile, 1)
    for ev in as_if_known_all_along(history):
        clean.queues[0].append(ev)
    clean.drain([])
    got, want = parts.users(), clean.users()
    assert set(got) == set(want)
    for uid, rec in want.items():
        mine = got[uid]
        assert (mine.first_seen, mine.last_active, mine.orders, mine.stage, mine.channel) == (
            rec.first_seen,
            rec.last_active,
            rec.orders,
            rec.stage,
            rec.channel,
        ), uid
        assert (mine.days, mine.retained, mine.active_days, mine.firsts, mine.counts) == (
            rec.days,
            rec.retained,
            rec.active_days,
            rec.firsts,
            rec.counts,
        ), uid
    assert _population(parts.counts) == _population(clean.counts)
    assert {k: round(v, 6) for k, v in parts.sums.items() if round(v, 6)} == {
        k: round(v, 6) for k, v in clean.sums.items() if round(v, 6)
    }


def test_later_events_of_a_merged_id_go_to_the_known_user() -> None:
    parts = Partitions(PROFILE)
    history = [
        {"event_id": "1", "user_id": "anon", "type": "visit", "ts": T0},
        {"event_id": "2", "user_id": "known", "type": "visit", "ts": T0 + DAY},
        {
            "event_id": "3",
            "user_id": "known",
            "type": "alias",
            "ts": T0 + DAY,
            "properties": {"previous_id": "anon"},
        },
    ]
    for raw in history:
        parts.send(raw["user_id"], orjson.dumps(raw))
    parts.drain([])
    parts.send(
        "anon", orjson.dumps({"event_id": "4", "user_id": "anon", "type": "order", "ts": T0 + 2 * DAY})
    )
    parts.drain([])
    users = parts.users()
    assert set(users) == {"known"} and users["known"].orders == 1 and users["known"].first_seen == T0
    assert parts.counts["merges_out"] == 1 and parts.counts["merges_in"] == 1
    assert parts.counts["merged_id_events"] == 1 and parts.counts["users|-"] == 1


def test_a_chain_of_merges_ends_in_the_last_id() -> None:
    parts = Partitions(PROFILE)
    history = [
        {"event_id": "1", "user_id": "a", "type": "visit", "ts": T0},
        {"event_id": "2", "user_id": "b", "type": "alias", "ts": T0 + 1, "properties": {"previous_id": "a"}},
        {"event_id": "3", "user_id": "c", "type": "alias", "ts": T0 + 2, "properties": {"previous_id": "b"}},
        # back to the start: sent on along a -> b -> c, where it names c itself: nothing to do
        {"event_id": "4", "user_id": "a", "type": "alias", "ts": T0 + 3, "properties": {"previous_id": "c"}},
    ]
    for raw in history:  # each applied, and its merge done, before the next
        parts.send(raw["user_id"], orjson.dumps(raw))
        parts.drain([])
    assert set(parts.users()) == {"c"} and parts.counts["users|-"] == 1


def test_two_ids_merged_into_each_other_at_once_are_a_circle_that_is_cut() -> None:
    parts = Partitions(PROFILE)
    for raw in (
        {"event_id": "1", "user_id": "x", "type": "visit", "ts": T0},
        {"event_id": "2", "user_id": "y", "type": "visit", "ts": T0},
    ):
        parts.send(raw["user_id"], orjson.dumps(raw))
    parts.drain([])
    for known, anon in (("x", "y"), ("y", "x")):  # both sent before either is applied
        alias = {
            "event_id": f"alias-{known}",
            "user_id": known,
            "type": "alias",
            "ts": T0 + 1,
            "properties": {"previous_id": anon},
        }
        parts.send(known, orjson.dumps(alias))
    parts.drain([])
    # each record followed the other id round and round until the bound: dropped and counted
    assert parts.counts["merge_cycles"] == 2 and parts.users() == {}
    assert parts.counts["users|-"] == 0


def test_fold_is_the_same_whichever_record_is_called_known() -> None:
    a = UserRecord(T0, T0 + DAY, T0 + DAY, "ads", 0, 1, 5.0, {"order": 1}, days=0b11, active_days=0b11)
    b = UserRecord(
        T0 + 2 * DAY, T0 + 5 * DAY, T0 + 5 * DAY, "-", -1, 2, 7.0, {"order": 2}, days=1, active_days=0b1001
    )
    rules = (
        PROFILE.funnel,
        __import__("service.core.retention", fromlist=["RetentionRule"]).RetentionRule.of(
            PROFILE.retention_days, PROFILE.calendar
        ),
        None,
        PROFILE.calendar,
    )
    one, two = fold(a, b, *rules), fold(b, a, *rules)
    assert one == two
    assert (
        one.first_seen == T0 and one.last_active == T0 + 5 * DAY and one.orders == 3 and one.channel == "ads"
    )
    assert one.active_days == 0b11 | 0b1001 << 2
