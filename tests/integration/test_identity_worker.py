"""Identity merges through the real worker, across partitions.

Part of each chosen user's history is sent under an anonymous id, then an alias names it;
once every merge is done, everything the API reports must equal the reference computed on
the history in which those events were the user's all along.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from service.core.partitioning import partition_for
from tests.stack import Stack, assert_matches_reference, history, read_counters, wait_async

pytestmark = pytest.mark.integration


def split_identities(
    events: list[dict[str, Any]], profile: Any, users: int
) -> tuple[list[dict[str, Any]], int]:
    """The history with the first part of `users` users' events under `anon-<id>` and an
    alias after it; returns it with the number of aliases."""
    by_user: dict[str, list[int]] = defaultdict(list)
    for i, ev in enumerate(events):
        by_user[ev["user_id"]].append(i)
    renamed: dict[int, str] = {}
    aliases: dict[int, dict[str, Any]] = {}
    for uid in sorted(u for u, idx in by_user.items() if len(idx) >= 4)[:users]:
        idx = by_user[uid]
        cut = next((i for i in idx[len(idx) // 2 :] if profile.is_activity(events[i]["type"])), None)
        if cut is None:
            continue
        for i in idx:
            if i < cut:
                renamed[i] = f"anon-{uid}"
        last = max(i for i in idx if i < cut)
        aliases[last] = {
            "event_id": f"alias-{uid}",
            "user_id": uid,
            "type": "alias",
            "ts": events[last]["ts"],
            "properties": {"previous_id": f"anon-{uid}"},
        }
    out = []
    for i, ev in enumerate(events):
        out.append({**ev, "user_id": renamed[i]} if i in renamed else ev)
        if i in aliases:
            out.append(aliases[i])
    return out, len(aliases)


async def test_merged_users_equal_the_reference_of_the_history_under_one_id(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    profile = stack.settings.loaded_profile
    events = history(150)
    sent, merges = split_identities(events, profile, 40)
    crossing = sum(
        partition_for(e["user_id"], stack.partitions)
        != partition_for(e["properties"]["previous_id"], stack.partitions)
        for e in sent
        if e["type"] == "alias"
    )
    assert merges >= 30 and crossing >= merges // 2  # most merges cross partitions
    stack.publish(sent)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)

        async def merged() -> bool:
            counters = await read_counters(stack)
            return counters.get("merges_in", 0) == merges and counters.get("merges_out", 0) == merges

        await wait_async(merged, 90, "every merge to be folded in")
        # events of an anonymous id that came after its merge are re-sent under the known id:
        # the totals settle once those are applied too
        await _eventually(lambda: assert_matches_reference(api, events, profile), 60)
        anon = next(e["properties"]["previous_id"] for e in sent if e["type"] == "alias")
        asked = (await api.get(f"/users/{anon}")).json()
        assert asked["merged_from"] == anon and asked["user_id"] == anon.removeprefix("anon-")
    finally:
        worker.stop()


async def _eventually(check: Callable[[], Awaitable[None]], timeout: float) -> None:
    """`check` passes within `timeout` seconds (its last failure is raised otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
