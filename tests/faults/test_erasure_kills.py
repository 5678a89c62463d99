"""`kill -9` of the worker while erasures are applied: each is applied once, exactly.

The history is streamed in chunks with erase requests between them (for users that have
events before and after their erasure), sent the way `lifecycle users delete` sends them;
the worker is killed at a random moment of each chunk and started again. At the end the
totals must be the reference's on the history without the erased users, each erasure
counted once and each later event of an erased user dropped and counted once.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_api
from service.cli.users import send_requests
from tests import reference as ref
from tests.faults.history import (
    applied_total,
    fault_profile,
    fault_stack,
    paced_publish,
    trigger_history,
    wait_progress,
)
from tests.integration.test_erasure_worker import _absent_from_redis
from tests.stack import read_counters, wait_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 4


async def test_kill_9_mid_erasure_applies_each_erasure_once(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    stack = fault_stack(broker, redis_url, tmp_path, PARTITIONS)
    events = trigger_history(250)
    rng = random.Random(20261206)
    kills = 2
    size = -(-len(events) // (kills + 1))
    chunks = [events[i : i + size] for i in range(0, len(events), size)]
    users = sorted({e["user_id"] for e in events})
    erased_per_round = [rng.sample(users, 10) for _ in range(kills)]
    history: list[dict[str, Any]] = []  # what was sent, in order, for the reference
    worker = stack.worker()
    try:
        for i in range(kills):
            before = applied_total(stack)
            stack.publish(chunks[i][:50])
            history += chunks[i][:50]
            wait_progress(stack, before, worker)
            await asyncio.to_thread(send_requests, stack.settings, "erase", erased_per_round[i], "fault test")
            history += [{"control": "erase", "user_id": u} for u in erased_per_round[i]]
            publisher = paced_publish(stack, chunks[i][50:], seconds=2.0, parts=8)
            time.sleep(rng.uniform(0.05, 1.5))
            worker.kill()
            publisher.join()
            history += chunks[i][50:]
            worker = stack.worker()
        stack.publish(chunks[kills])
        history += chunks[kills]
        stack.wait_applied(worker, 180)
        erased = sorted({u for round_ in erased_per_round for u in round_})
        requests = sum(len(r) for r in erased_per_round)

        async def applied() -> bool:
            return (await read_counters(stack)).get("erasures", 0) >= requests

        await wait_async(applied, 120, "the erasures to be applied")
    finally:
        worker.stop()

    counters = await read_counters(stack)
    assert counters.get("erasures", 0) == requests  # once each, whatever the kills
    kept = ref.without_erased(history)
    dropped_later = _events_after_erasure(history)
    assert counters.get("suppressed_events", 0) == dropped_later
    users_left = ref.reference(kept, fault_profile())
    assert not set(erased) & set(users_left)
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        body = (await api.get("/lifecycle")).json()
        assert body["total"] == len(users_left)
        assert body["counts"] == ref.lifecycle_counts(users_left, body["as_of"], fault_profile())
        funnel = (await api.get("/funnel")).json()
        assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users_left, fault_profile())
        ind = (await api.get("/indicators")).json()
        assert ind["orders"] == sum(u.orders for u in users_left.values())
        assert ind["gmv"] == pytest.approx(round(sum(u.revenue for u in users_left.values()), 2))
    _absent_from_redis(stack, erased)


def _events_after_erasure(history: list[dict[str, Any]]) -> int:
    """Distinct events of a user sent after that user's erasure (none is restored here)."""
    seen: set[str] = set()
    erased: set[str] = set()
    n = 0
    for item in history:
        if "control" in item:
            erased.add(item["user_id"])
        elif item["event_id"] not in seen:
            seen.add(item["event_id"])
            n += item["user_id"] in erased
    return n
