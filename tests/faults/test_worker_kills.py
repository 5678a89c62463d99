"""`kill -9` of the worker at random moments of a stream, restarted each time.

A generated history with recalls, renewals, expiries and onboarding (event clock, so the
triggers fire as the history's time passes) is streamed in chunks; once the (re)started
worker applies the head of a chunk, the rest is streamed over three seconds and the worker
is killed with SIGKILL at a random moment of it (mid-batch, mid-sweep or mid-relay:
wherever it is) and started again. At the end state, counters and the trigger topic
must equal the reference exactly.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.faults.checks import check_state
from tests.faults.downstream import audit_triggers, expected_by_core, read_trigger_topic, recalls_by_reference
from tests.faults.figures import report
from tests.faults.history import (
    applied_total,
    fault_profile,
    fault_stack,
    outbox_length,
    paced_publish,
    partition_generations,
    trigger_history,
    wait_progress,
)
from tests.faults.scale import full
from tests.processes import ServiceProcess, wait_for
from tests.reference import partition_clocks, transitions
from tests.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600 if full() else 300)]

PARTITIONS = 4


def wait_drained(stack: Stack, worker: ServiceProcess, timeout: float) -> None:
    """Everything applied, swept to each partition's clock and relayed to the trigger topic."""
    stack.wait_applied(worker, timeout)
    stack.wait_swept(worker, timeout)
    wait_for(lambda: outbox_length(stack) == 0, timeout, "the outbox to be relayed", worker)


async def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    broker: Any, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    users, kills = (10_000, 20) if full() else (1_000, 3)
    stack = fault_stack(broker, redis_url, tmp_path, PARTITIONS)
    stack.env["LIFECYCLE_LOG_FORMAT"] = "json"  # as the image logs: parsed line by line below
    events = trigger_history(users)
    rng = random.Random(20261123)
    size = -(-len(events) // (kills + 1))
    chunks = [events[i : i + size] for i in range(0, len(events), size)]
    started = time.monotonic()
    worker = stack.worker()
    kill_log: list[dict[str, Any]] = []
    try:
        for i in range(kills):
            # a few events first: once the (re)started worker applies them it is consuming
            head, tail = chunks[i][:50], chunks[i][50:]
            before = applied_total(stack)
            stack.publish(head)
            wait_progress(stack, before, worker)
            publisher = paced_publish(stack, tail, seconds=3.0, parts=12)  # the stream goes on...
            time.sleep(rng.uniform(0.1, 2.5))  # ...and the kill lands at a random moment of it
            streaming = publisher.is_alive()
            worker.kill()
            publisher.join()
            kill_log.append({"streaming": streaming})
            worker = stack.worker()
        stack.publish(chunks[kills])
        wait_drained(stack, worker, timeout=600 if full() else 180)
    finally:
        worker.stop()
    elapsed = time.monotonic() - started

    profile = fault_profile()
    tr = transitions(events, profile, partition_clocks(events, PARTITIONS))
    expected = expected_by_core([events], profile, PARTITIONS)
    state = await check_state(stack, events, tr, duplicates=0)
    audit = audit_triggers(
        read_trigger_topic(stack.settings.kafka_bootstrap, stack.settings.triggers_topic, PARTITIONS),
        expected.fired,
        PARTITIONS,
    )
    recalls = sum(1 for kind, _ in expected.fired.values() if kind == "recall")
    figures = {
        "broker": broker.kind,
        "events": len(events),
        "users": state.users,
        "kills": len(kill_log),
        "kills_while_events_arrived": sum(k["streaming"] for k in kill_log),
        "facts_compared": state.facts,
        "mismatches": len(state.mismatches),
        "triggers_expected": audit.expected,
        "triggers_delivered": audit.delivered,
        "missing_triggers": len(audit.missing),
        "duplicate_triggers": len(audit.duplicates),
        "unexpected_triggers": len(audit.unexpected),
        "claims_per_partition": partition_generations(stack),
        "seconds": round(elapsed, 1),
    }
    report(request, "worker-kills", figures)
    assert len(kill_log) == kills
    assert not state.mismatches, state.mismatches[:20]
    assert audit.clean, audit
    assert recalls == recalls_by_reference(tr)  # the core's recalls, against the reference's entries
    assert all(gen >= 2 for gen in partition_generations(stack).values())  # each restart claimed anew
    check_json_log(tmp_path / "worker.log", kills)


def check_json_log(path: Path, kills: int) -> None:
    """Every line the worker wrote is one JSON object with the documented fields; only a
    line cut short by a SIGKILL (at most one per kill) may be incomplete."""
    lines = path.read_text().splitlines()
    cut = [line for line in lines if not line.endswith("}")]
    assert len(cut) <= kills, cut[:5]
    records = [orjson.loads(line) for line in lines if line.endswith("}")]
    assert len(records) > 20
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        datetime.fromisoformat(record["time"])
    assert any(r["logger"].startswith("service.") for r in records)
