"""The audience walk on a real redis-server: ties, moves and channel changes under a cursor.

Users are written straight into the indexes and records (the worker's key layout), so
the cases that are rare in generated histories — hundreds of users with the same
`last_active`, the cursor's own user moving, a user changing channel mid-walk — are
made to happen on purpose.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from service.core.audience_filters import AudienceFilter
from service.core.audiences import Cursor
from service.core.profile import load_profile
from service.core.records import UserRecord
from service.storage.audiences import STREAM_CHUNK, AudienceReader
from service.storage.keys import PartitionKeys
from service.storage.queries import Queries

pytestmark = pytest.mark.integration

NOW = 1_790_000_000_000
DAY = 86_400_000


async def _put(redis: Redis, k: PartitionKeys, uid: str, channel: str, last_active: int) -> None:
    rec = UserRecord(first_seen=NOW - 100 * DAY, last_active=last_active, seen_until=NOW, channel=channel)
    await redis.hset(k.users, uid, rec.pack())
    await redis.zadd(k.active(channel), {uid: last_active})
    await redis.sadd(k.channels, channel)
    await redis.hset(k.meta, "wm", NOW)


async def _walk(reader: AudienceReader, f: AudienceFilter, limit: int, between: Any = None) -> list[str]:
    ids: list[str] = []
    cursor: Cursor | None = None
    for page_no in range(10_000):
        page = await reader.page(f, cursor, limit)
        ids += [u["user_id"] for u in page.users]
        if page.next_cursor is None:
            return ids
        cursor = Cursor.decode(page.next_cursor, f.fingerprint(), reader.cursor_key)
        if between is not None:
            await between(page_no, cursor)
    raise AssertionError("the walk did not end")


def _reader(redis: Redis) -> tuple[AudienceReader, list[PartitionKeys]]:
    queries = Queries(redis, "w", 2, load_profile("daily_app"), "event")
    return AudienceReader(queries), queries.parts


async def test_hundreds_of_users_with_one_last_active_are_each_returned_once(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        await _hundreds_of_ties(redis)


async def _hundreds_of_ties(redis: Redis) -> None:
    audiences, parts = _reader(redis)
    same = NOW - 5 * DAY  # silent
    for i in range(250):
        await _put(redis, parts[0], f"tie-{i:03d}", "ads", same)
    await _put(redis, parts[0], "older", "ads", same - 1)
    ids = await _walk(audiences, AudienceFilter(states=frozenset({"silent"})), limit=7)
    assert ids == [*sorted((f"tie-{i:03d}" for i in range(250)), reverse=True), "older"]


async def test_users_moving_during_the_walk_are_never_returned_twice(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        await _moves(redis)


async def _moves(redis: Redis) -> None:
    audiences, parts = _reader(redis)
    for i in range(60):
        await _put(redis, parts[i % 2], f"u-{i:02d}", "-" if i % 3 == 0 else "ads", NOW - (i + 1) * 3_600_000)
    moved: set[str] = set()

    async def meanwhile(page_no: int, cursor: Cursor) -> None:
        k = parts[cursor.partition]
        member = cursor.member.decode()
        # the cursor's own user comes back, and a user without a channel shows one
        await _put(redis, k, member, cursor.source.removeprefix("la:"), NOW)
        moved.add(member)
        if cursor.partition == 1 and cursor.source == "la:ads" and not {"u-03", "u-33"} & moved:
            # while partition 1's `ads` index is walked, two users without a channel show one
            for uid in ("u-03", "u-33"):
                k2 = parts[int(uid[2:]) % 2]
                await redis.zrem(k2.active("-"), uid)
                await _put(redis, k2, uid, "web", NOW - 1000)
                moved.add(uid)

    ids = await _walk(audiences, AudienceFilter(), limit=4, between=meanwhile)
    assert len(ids) == len(set(ids)), ("no user twice", [i for i in ids if ids.count(i) > 1])
    assert {"u-03", "u-33"} <= moved, "the channel change happened mid-walk"
    assert {f"u-{i:02d}" for i in range(60)} - moved <= set(ids), "users who did not move are all returned"


TIES = 20_000


async def _commands(redis: Redis) -> dict[str, int]:
    """Calls per command since the server started (those run inside scripts included)."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _spent(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(n - before.get(name, 0) for name, n in after.items() if name != "info")


async def _one_score(redis: Redis, parts: list[PartitionKeys], n: int) -> int:
    """`n` users of partition 0 with one `last_active` (an import with day-precision times)."""
    same = NOW - 5 * DAY
    rec = UserRecord(first_seen=NOW - 100 * DAY, last_active=same, seen_until=NOW, channel="ads").pack()
    k = parts[0]
    for start in range(0, n, 5000):
        pipe = redis.pipeline(transaction=False)
        ids = [f"t-{i:06d}" for i in range(start, min(n, start + 5000))]
        pipe.hset(k.users, mapping=dict.fromkeys(ids, rec))
        pipe.zadd(k.active("ads"), dict.fromkeys(ids, same))
        await pipe.execute()
    await redis.sadd(k.channels, "ads")
    await redis.hset(k.meta, "wm", NOW)
    return same


async def test_pages_deep_inside_one_score_cost_what_the_first_pages_cost(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        audiences, parts = _reader(redis)
        await _one_score(redis, parts, TIES)
        f = AudienceFilter(states=frozenset({"silent"}))
        costs: list[int] = []
        ids: list[str] = []
        cursor: Cursor | None = None
        while True:
            before = await _commands(redis)
            page = await audiences.page(f, cursor, 200)
            costs.append(_spent(before, await _commands(redis)))
            ids += [u["user_id"] for u in page.users]
            if page.next_cursor is None:
                break
            cursor = Cursor.decode(page.next_cursor, f.fingerprint(), audiences.cursor_key)
        assert ids == sorted((f"t-{i:06d}" for i in range(TIES)), reverse=True)
        first, last = max(costs[:10]), max(costs[-10:])
        assert last <= 2 * first, f"Redis commands per page: {first} at the start, {last} at the end"


async def test_an_export_of_one_score_reads_each_member_once(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as redis:
        audiences, parts = _reader(redis)
        await _one_score(redis, parts, TIES)
        before = await _commands(redis)
        seen = [u["user_id"] async for _, users in audiences.stream(AudienceFilter()) for u in users]
        spent = await _commands(redis)
        assert len(seen) == TIES == len(set(seen))
        calls = spent.get("evalsha", 0) - before.get("evalsha", 0)
        chunks = -(-TIES // STREAM_CHUNK)
        assert calls <= chunks + 2, f"{calls} script calls for {chunks} chunks of members"
