"""Erasure through the real worker: `DELETE /users/{id}` and `lifecycle users delete`.

Erased users must leave the lifecycle counts, the funnel, the indicators, the indexes and
the records exactly (the reference on the history without them), stay out while
suppressed, come back as new users after a restore, and the record of requests must
say who asked and when without naming them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.erasure import suppression_digest
from service.core.partitioning import partition_for
from service.storage.keys import all_partitions
from tests import reference as ref
from tests.processes import sync_redis
from tests.stack import T0, Stack, history, make_stack, read_counters, visit, wait_async

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-key-0123"}


def _erased_ids(events: list[dict[str, Any]], partitions: int, per_partition: int) -> list[str]:
    """Users spread over every partition, payers among them."""
    users = ref.reference(events, _profile())
    ordered = sorted(users, key=lambda u: (-users[u].orders, u))
    picked: dict[int, list[str]] = {}
    for uid in ordered:
        bucket = picked.setdefault(partition_for(uid, partitions), [])
        if len(bucket) < per_partition:
            bucket.append(uid)
    assert len(picked) == partitions
    return sorted(u for bucket in picked.values() for u in bucket)


def _profile() -> Any:
    from service.core.profile import load_profile

    return load_profile("daily_app")


async def _assert_totals(api: httpx.AsyncClient, users: dict[str, ref.RefUser]) -> None:
    profile = _profile()
    body = (await api.get("/lifecycle")).json()
    assert body["total"] == len(users)
    assert body["counts"] == ref.lifecycle_counts(users, body["as_of"], profile)
    funnel = (await api.get("/funnel")).json()
    assert [s["users"] for s in funnel["stages"]] == ref.funnel_users(users, profile)
    ind = (await api.get("/indicators")).json()
    assert ind["users"] == len(users)
    assert ind["orders"] == sum(u.orders for u in users.values())
    assert ind["payers"] == sum(1 for u in users.values() if u.orders)
    assert ind["gmv"] == pytest.approx(round(sum(u.revenue for u in users.values()), 2))


def _absent_from_redis(stack: Stack, ids: list[str]) -> None:
    """No record, no index entry, on the suppression list: by every key of every partition."""
    client = sync_redis(stack.settings.redis_url, stack.settings.redis_cluster)
    try:
        for k in all_partitions(stack.settings.key_prefix, stack.partitions):
            assert not any(client.hmget(k.users, ids))
            for key in client.scan_iter(match=f"{k.tag}:*"):
                kind = client.type(key)
                if kind == b"zset":
                    assert not any(client.zmscore(key, ids)), key
        for uid in ids:
            k = all_partitions(stack.settings.key_prefix, stack.partitions)[
                partition_for(uid, stack.partitions)
            ]
            assert client.sismember(k.erased, suppression_digest(uid))
    finally:
        client.close()


@pytest.fixture
def admin_stack(broker: Any, redis_url: str, tmp_path: Path) -> Stack:
    return make_stack(
        broker, redis_url, tmp_path, LIFECYCLE_ADMIN_KEY="admin-key-0123", LIFECYCLE_API_KEY="read-key-0123"
    )


async def test_erased_users_leave_every_count_and_stay_out_until_restored(admin_stack: Stack) -> None:
    from service.api.app import create_api

    stack = admin_stack
    events = history(200)
    stack.publish(events)
    worker = stack.worker()
    app = create_api(stack.settings)
    transport = httpx.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"X-API-Key": "read-key-0123"}
        ) as api,
    ):
        try:
            stack.wait_applied(worker)
            erased = _erased_ids(events, stack.partitions, 3)
            pending = Counter()
            for uid in erased:
                for t in (await api.get(f"/users/{uid}/triggers")).json()["scheduled"]:
                    pending[t["kind"]] += 1
            before = await read_counters(stack)
            # only the admin key erases: no key, the read key -> 401
            assert (await api.delete(f"/users/{erased[0]}", params={"requester": "x"})).status_code == 401
            for uid in erased:
                reply = await api.delete(
                    f"/users/{uid}", params={"requester": "dpo ticket 42"}, headers=ADMIN
                )
                assert reply.status_code == 202, reply.text
            assert (await api.delete("/users/x", headers=ADMIN)).status_code == 422  # who asks is required

            async def applied() -> bool:
                return (await read_counters(stack)).get("erasures", 0) == len(erased)

            await wait_async(applied, 60, "the erasures to be applied")
            kept = [e for e in events if e["user_id"] not in set(erased)]
            await _assert_totals(api, ref.reference(kept, _profile()))
            for uid in erased:
                assert (await api.get(f"/users/{uid}")).status_code == 404
            _absent_from_redis(stack, erased)
            after = await read_counters(stack)
            cancelled = {
                kind: after.get(f"tg|{kind}|{ch}|cancelled", 0) - before.get(f"tg|{kind}|{ch}|cancelled", 0)
                for kind in pending
                for ch in {"-", *(e.get("channel") or "-" for e in events)}
            }
            assert sum(cancelled.values()) >= sum(pending.values())

            # suppressed: later events are dropped and counted, the user stays out
            late = [visit(f"late-{u}", u, T0 + 61 * 86_400_000) for u in erased]
            stack.publish(late)

            async def dropped() -> bool:
                return (await read_counters(stack)).get("suppressed_events", 0) == len(erased)

            await wait_async(dropped, 60, "the suppressed events to be counted")
            assert (await api.get(f"/users/{erased[0]}")).status_code == 404

            # restored: the next event makes a new user, nothing of before comes back
            uid = erased[0]
            reply = await api.post(
                f"/users/{uid}/restore", params={"requester": "dpo ticket 43"}, headers=ADMIN
            )
            assert reply.status_code == 202, reply.text
            again_ts = T0 + 62 * 86_400_000

            async def restored() -> bool:
                return (await read_counters(stack)).get("restores", 0) == 1

            await wait_async(restored, 60, "the restore to be applied")
            stack.publish([visit("again", uid, again_ts)])

            async def back() -> bool:
                return (await api.get(f"/users/{uid}")).status_code == 200

            await wait_async(back, 60, "the restored user's new event")
            user = (await api.get(f"/users/{uid}")).json()
            assert user["first_seen"] == again_ts and user["orders"] == 0

            # the record: who and when, never the id
            log = await api.get("/erasures", headers=ADMIN)
            assert log.status_code == 200
            entries = log.json()["erasures"]
            assert Counter((e["action"], e["status"]) for e in entries) == {
                ("erase", "requested"): len(erased),
                ("erase", "sent"): len(erased),
                ("restore", "requested"): 1,
                ("restore", "sent"): 1,
            }
            assert all(u not in log.text for u in erased)
            assert (await api.get("/erasures")).status_code == 401  # the read key does not open it
        finally:
            worker.stop()


async def test_the_command_line_erases_from_a_file(admin_stack: Stack, tmp_path: Path) -> None:
    stack = admin_stack
    events = history(120)
    stack.publish(events)
    erased = _erased_ids(events, stack.partitions, 2)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(erased) + "\n\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "users",
            "delete",
            "--file",
            str(ids),
            "--requester",
            "privacy team",
        ],
        env={**os.environ, **stack.env, "LIFECYCLE_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"{len(erased)} erase request(s) sent" in run.stdout
    worker = stack.worker()
    try:
        stack.wait_applied(worker)

        async def applied() -> bool:
            return (await read_counters(stack)).get("erasures", 0) == len(erased)

        await wait_async(applied, 60, "the erasures to be applied")
        from service.api.app import create_api

        app = create_api(stack.settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://api", headers={"X-API-Key": "read-key-0123"}
        ) as api:
            kept = [e for e in events if e["user_id"] not in set(erased)]
            await _assert_totals(api, ref.reference(kept, _profile()))
        _absent_from_redis(stack, erased)
        log = subprocess.run(
            [sys.executable, "-m", "service.cli", "users", "log"],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert log.returncode == 0 and log.stdout.count('"privacy team"') == 2 * len(erased)
        assert all(u not in log.stdout for u in erased)
    finally:
        worker.stop()
