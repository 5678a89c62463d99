"""Duplicate, out-of-order and late events, within and beyond what the service allows.

The service has no "allowed lateness" setting; its rule, made explicit here (docs/testing.md,
"Late events: the rule") and checked against `tests.reference.transitions_as_delivered`:

- An event is *late* when its time is older than the clock its partition has already
  counted to (the event clock: the partition's latest event time, swept every
  `LIFECYCLE_SWEEP_INTERVAL`). Late or not, it updates the user's state exactly:
  records, lifecycle and funnel counts equal the in-order reference whatever the delay.
- Transitions and triggers are counted when the clock passes them and are final: a late
  event's own change is counted at the clock it arrived at, nothing counted is taken back,
  no sent trigger is sent again, and a recall whose due time had already passed when the
  event arrived is not sent; a scheduled trigger the late event makes already due (an
  onboarding nudge after a late registration) is sent on arrival.
- Hence the allowed lateness is per user: a late event is counted exactly as in order as
  long as none of its user's lifecycle points (a threshold crossing, a due trigger) lies
  between its time and the clock — for a user still active, up to `silent_after` late.
  Beyond that, the difference is counted at arrival (e.g. `silent -> retained`).
- A duplicate (same `event_id`) within `LIFECYCLE_DEDUP_WINDOW` is applied once, however
  it arrives: in the same envelope, a later batch, a one-event message, or late.

The run is deterministic: the history's first part is delivered in order with duplicates,
applied and swept; then late events (within and beyond, of known and new users, shuffled)
arrive while no clock moves; then the rest of the history, with late duplicates.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service.core.durations import DAY_MS
from service.core.lifecycle import state_at
from service.core.partitioning import partition_for
from service.core.triggers import trigger_id
from service.storage.keys import all_partitions
from tests.faults.checks import check_state, distinct_valid
from tests.faults.downstream import audit_triggers, expected_by_core, read_trigger_topic
from tests.faults.figures import report
from tests.faults.history import (
    fault_profile,
    fault_stack,
    outbox_length,
    partition_generations,
    trigger_history,
)
from tests.faults.scale import full
from tests.processes import sync_redis, wait_for
from tests.reference import partition_clocks, reference, transitions, transitions_as_delivered
from tests.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600 if full() else 300)]

PARTITIONS = 4
HOUR = 3_600_000


def with_duplicates(events: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """`events` with copies: some right after the original (same envelope), some hundreds of
    events later (another batch). Returns the deliveries and how many copies were added."""
    out: list[dict[str, Any]] = []
    later: dict[int, list[dict[str, Any]]] = {}
    copies = 0
    for i, ev in enumerate(events):
        out.append(ev)
        out.extend(later.pop(i, []))
        roll = rng.random()
        if roll < 0.05:
            out.append(dict(ev))
            copies += 1
        elif roll < 0.10:
            later.setdefault(i + rng.randint(100, 1000), []).append(dict(ev))
            copies += 1
    for rest in later.values():
        out.extend(rest)
    return out, copies


def late_events(
    first_part: list[dict[str, Any]], clocks: dict[int, int], rng: random.Random, n: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Late visits, all older than their partition's clock: `within` (users still active at the
    clock, at or after their last activity: no lifecycle point in between) and `beyond` (users
    already silent or worse, at a time that would have kept them active, and new users first
    seen days ago). Returns within, beyond and the ids of the new users."""
    profile = fault_profile()
    th = profile.thresholds
    users = reference(first_part, profile)
    within: list[dict[str, Any]] = []
    beyond: list[dict[str, Any]] = []
    new_users: list[str] = []
    for uid in sorted(users):
        u = users[uid]
        wm = clocks[partition_for(uid, PARTITIONS)]
        if state_at(u.first_seen, u.last_active, wm, th).value in ("new", "retained"):
            if len(within) < n and wm > u.last_active:
                ts = rng.randint(u.last_active, wm - 1)
                within.append({"event_id": f"late-w-{uid}", "user_id": uid, "type": "visit", "ts": ts})
        elif len(beyond) < n and u.last_active + th.silent_after <= wm - th.silent_after:
            # earlier than the silent crossing already counted, and its own crossing passed too
            ts = rng.randint(
                u.last_active + 1, min(u.last_active + th.silent_after - 1, wm - th.silent_after)
            )
            beyond.append({"event_id": f"late-b-{uid}", "user_id": uid, "type": "view", "ts": ts})
    for i in range(n // 4):
        uid = f"late-new-{i}"
        ts = (
            clocks[partition_for(uid, PARTITIONS)] - rng.randint(4, 20) * DAY_MS
        )  # first seen already silent, or churned
        beyond.append(
            {"event_id": f"{uid}-a", "user_id": uid, "type": "register", "ts": ts, "channel": "ads"}
        )
        beyond.append(
            {"event_id": f"{uid}-b", "user_id": uid, "type": "visit", "ts": ts - HOUR}
        )  # out of order
        new_users.append(uid)
    return within, beyond, new_users


def settle(stack: Stack, proc: Any, timeout: float) -> None:
    stack.wait_applied(proc, timeout)
    stack.wait_swept(proc, timeout)


def partition_clocks_now(stack: Stack) -> dict[int, int]:
    """Each partition's event clock (`wm` in its Redis meta)."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return {
            k.partition: int(client.hget(k.meta, "wm") or 0) for k in all_partitions(s.key_prefix, PARTITIONS)
        }
    finally:
        client.close()


async def test_duplicates_out_of_order_and_late_events_follow_the_rule(
    broker: Any, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    users, late_n = (8_000, 2_000) if full() else (1_000, 200)
    rng = random.Random(6)
    stack = fault_stack(broker, redis_url, tmp_path, PARTITIONS)
    history = trigger_history(users, seed=13)
    split = int(len(history) * 0.6)
    first_part, rest = history[:split], history[split:]
    phase1, copies1 = with_duplicates(first_part, rng)
    timeout = 600 if full() else 180
    started = time.monotonic()
    worker = stack.worker()
    try:
        half = len(phase1) // 2
        stack.publish(phase1[:half])
        stack.publish(phase1[half : half + 200], single=True)  # one event per message, duplicates too
        stack.publish(phase1[half + 200 :])
        settle(stack, worker, timeout)
        clocks = partition_clocks_now(stack)  # every partition applied and swept to these

        within, beyond, new_users = late_events(first_part, clocks, rng, late_n)
        phase2 = within + beyond
        rng.shuffle(phase2)  # out of order among themselves too
        phase2_dups = rng.sample(phase2, len(phase2) // 10)
        phase2 += phase2_dups
        stack.publish(phase2)
        stack.wait_applied(worker, timeout)  # before anything moves a clock again

        late_dups = rng.sample(first_part, len(first_part) // 20)  # late *and* duplicate: ignored
        phase3 = rest[: len(rest) // 2] + late_dups + rest[len(rest) // 2 :]
        stack.publish(phase3)
        settle(stack, worker, timeout)
        wait_for(lambda: outbox_length(stack) == 0, timeout, "the outbox to be relayed", worker)
    finally:
        worker.stop()
    elapsed = time.monotonic() - started

    profile = fault_profile()
    delivered = phase1 + phase2 + phase3
    duplicates = len(delivered) - len(distinct_valid(delivered))
    assert duplicates == copies1 + len(phase2_dups) + len(late_dups)
    until = partition_clocks([ev.to_json() for ev in distinct_valid(delivered)], PARTITIONS)
    deliveries = (
        [(ev, 0) for ev in phase1]
        + [(ev, clocks[partition_for(ev["user_id"], PARTITIONS)]) for ev in phase2]
        + [(ev, 0) for ev in phase3]
    )
    tr = transitions_as_delivered(deliveries, profile, until)
    state = await check_state(stack, delivered, tr, duplicates)
    expected = expected_by_core([phase1, phase2, phase3], profile, PARTITIONS)
    topic = read_trigger_topic(stack.settings.kafka_bootstrap, stack.settings.triggers_topic, PARTITIONS)
    audit = audit_triggers(topic, expected.fired, PARTITIONS)
    on_topic = {d.id for d in topic}

    # within the allowed lateness: the same as if they had come in time order
    within_users = {ev["user_id"] for ev in within}
    in_order = sorted(history + within, key=lambda ev: int(ev["ts"]))
    in_order_fired = expected_by_core([in_order], profile, PARTITIONS).fired
    want_within = {tid for tid, (_, uid) in in_order_fired.items() if uid in within_users}
    got_within = {d.id for d in topic if d.subject in within_users}
    # beyond it: nothing counted is taken back, nothing is sent twice, no passed recall is sent
    beyond_known = [ev for ev in beyond if not ev["user_id"].startswith("late-new-")]
    first_users = reference(first_part, profile)
    kept_recalls = [
        trigger_id("recall", ev["user_id"], f"silent|{first_users[ev['user_id']].last_active}")
        for ev in beyond_known
    ]
    passed_recalls = [trigger_id("recall", ev["user_id"], f"silent|{ev['ts']}") for ev in beyond_known]
    new_user_recalls = [
        trigger_id("recall", uid, f"silent|{ts}")
        for uid in new_users
        for ts in {int(ev["ts"]) for ev in beyond if ev["user_id"] == uid}
    ]
    # a scheduled trigger a late event makes already due (onboarding after a late registration)
    # is sent when it arrives: its condition (no first order) still holds
    late_onboarding = [
        trigger_id("onboarding", ev["user_id"], str(ev["ts"])) for ev in beyond if ev["type"] == "register"
    ]
    delta = Counter(tr)
    delta.subtract(transitions(history + within + beyond, profile, until))
    report(
        request,
        "late-and-duplicate-events",
        {
            "broker": broker.kind,
            "events": len(distinct_valid(delivered)),
            "deliveries": len(delivered),
            "duplicates_sent": duplicates,
            "late_within": len(within),
            "late_beyond": len(beyond),
            "facts_compared": state.facts,
            "mismatches": len(state.mismatches),
            "triggers_expected": audit.expected,
            "triggers_delivered": audit.delivered,
            "missing_triggers": len(audit.missing),
            "duplicate_triggers": len(audit.duplicates),
            "transitions_differing_from_time_order": sum(abs(n) for n in delta.values()),
            "claims_per_partition": partition_generations(stack),
            "seconds": round(elapsed, 1),
        },
    )
    assert len(within) >= 100 and len(beyond_known) >= 100, (len(within), len(beyond_known))  # not vacuous
    assert not state.mismatches, state.mismatches[:20]
    assert audit.clean, audit
    assert got_within == want_within
    assert set(kept_recalls) <= on_topic
    assert not set(passed_recalls) & on_topic
    assert not set(new_user_recalls) & on_topic
    assert late_onboarding and set(late_onboarding) <= on_topic
    # the late events within the lateness alone change no count against time order
    only_within = transitions_as_delivered(
        [(ev, 0) for ev in first_part]
        + [(ev, clocks[partition_for(ev["user_id"], PARTITIONS)]) for ev in within]
        + [(ev, 0) for ev in rest],
        profile,
        until,
    )
    assert only_within == transitions(history + within, profile, until)
