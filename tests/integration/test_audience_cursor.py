"""Cursors of the audiences API from outside: forged, tampered, truncated or enormous ones are
a 400 that says why, and a real cursor still pages, across API processes sharing a secret."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from service.api.app import create_api
from service.core.profile import load_profile
from service.core.records import UserRecord
from service.settings import Settings
from service.storage.keys import PartitionKeys
from service.storage.queries import Queries

pytestmark = pytest.mark.integration

NOW = 1_790_000_000_000
DAY = 86_400_000


def _settings(redis_url: str, **extra: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix="cur",
        partitions=2,
        clock="event",
        **extra,  # type: ignore[arg-type]
    )


async def _users(redis_url: str, n: int) -> None:
    async with Redis.from_url(redis_url) as redis:
        parts = Queries(redis, "cur", 2, load_profile("daily_app"), "event").parts
        for i in range(n):
            k: PartitionKeys = parts[i % 2]
            last = NOW - 5 * DAY - i * 1000
            rec = UserRecord(first_seen=NOW - 100 * DAY, last_active=last, seen_until=NOW, channel="ads")
            await redis.hset(k.users, f"u-{i:03d}", rec.pack())
            await redis.zadd(k.active("ads"), {f"u-{i:03d}": last})
            await redis.sadd(k.channels, "ads")
            await redis.hset(k.meta, "wm", NOW)


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    await _users(redis_url, 30)
    app = create_api(_settings(redis_url, cursor_secret="s3cret"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client


def _fingerprint(cursor: str) -> str:
    """The filters' fingerprint a cursor carries in the clear (whatever the encoding around it)."""
    head = _head(cursor)
    text = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode("latin-1")
    found = re.search(r'"([0-9a-f]{8,})"', text)
    assert found, cursor
    return found.group(1)


def _head(cursor: str) -> str:
    return cursor.split(".")[0]


def _flip(text: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:at] + alphabet[(alphabet.index(text[at]) + 1) % 64] + text[at + 1 :]


async def test_forged_tampered_truncated_or_enormous_cursors_are_400_with_a_reason(
    api: httpx.AsyncClient,
) -> None:
    params = {"state": "silent", "limit": 5}
    first = (await api.get("/audiences/users", params=params)).json()
    real = first["next_cursor"]
    assert real
    fp = _fingerprint(real)  # a forger can read it from any cursor it was given
    junk_docs = [
        [],
        ["x"],
        "just a string",
        {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5},
        [fp, 0, "no-colon", 1, "m"],
        [fp, 0, "la:ads", 1e300, "m"],
        [fp, 0, "la:ads", "1e999", "m"],
        [fp, -1, "la:ads", 1, "m"],
        [fp, 10**30, "la:ads", 1, "m"],
        [fp, 0, "la:nope", NOW, "u-001"],
    ]
    forged = [
        base64.urlsafe_b64encode(os.urandom(48)).decode(),
        "%%%not base64%%%",
        *(base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=") for d in junk_docs),
        *(_flip(real, i) for i in (0, len(real) // 2, len(real) - 1)),
        real[: len(real) // 2],
        real[:-1],
        real + "A" * 60_000,
    ]
    for cursor in forged:
        reply = await api.get("/audiences/users", params={**params, "cursor": cursor})
        assert reply.status_code == 400, (cursor[:80], reply.status_code, reply.text[:300])
        assert "cursor" in reply.json()["detail"], reply.text[:300]
    again = await api.get("/audiences/users", params={**params, "cursor": real})
    assert again.status_code == 200 and again.json()["users"]


async def test_a_cursor_pages_on_another_api_process_with_the_same_secret(
    api: httpx.AsyncClient, redis_url: str
) -> None:
    params = {"state": "silent", "limit": 7}
    first = (await api.get("/audiences/users", params=params)).json()
    seen = [u["user_id"] for u in first["users"]]
    other = create_api(_settings(redis_url, cursor_secret="s3cret"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(other), base_url="http://api") as replica:
        cursor = first["next_cursor"]
        while cursor:
            reply = await replica.get("/audiences/users", params={**params, "cursor": cursor})
            assert reply.status_code == 200, reply.text
            seen += [u["user_id"] for u in reply.json()["users"]]
            cursor = reply.json()["next_cursor"]
    assert sorted(seen) == sorted(f"u-{i:03d}" for i in range(30))
    stranger = create_api(_settings(redis_url, cursor_secret="another"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(stranger), base_url="http://api") as foreign:
        reply = await foreign.get("/audiences/users", params={**params, "cursor": first["next_cursor"]})
    assert reply.status_code == 400 and "cursor" in reply.json()["detail"]
