"""Audiences read from Redis: pages, streams and sizes, from the per-partition indexes.

The plan (which `last_active` intervals of which index hold the audience) is the pure
core's (`service.core.audiences`); this module walks it. A walk reads candidates in
chunks (one ZRANGE per chunk, then one HMGET of their records per chunk), checks each
with `matches` and never scans a partition's users beyond the planned intervals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from service.core.audience_filters import AudienceFilter, iso_ms
from service.core.audiences import (
    Cursor,
    Term,
    after,
    channel_order,
    count_terms,
    entered_at,
    la_intervals,
    matches,
    score_arg,
    segment_of,
    walk_index,
)
from service.core.lifecycle import state_at
from service.core.records import NO_CHANNEL, UserRecord
from service.queries import Queries

MAX_EXAMINED_PER_PAGE = 50_000  # candidates checked for one page, so a narrow filter answers in bounded time
STREAM_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Page:
    as_of: int
    users: list[dict[str, Any]]
    next_cursor: str | None


class AudienceReader:
    """Walks and counts audiences at the current clock over every partition."""

    def __init__(self, queries: Queries) -> None:
        self.q = queries
        self.profile = queries.profile
        self.stage_names = [s.name for s in queries.profile.funnel]

    def user_json(self, uid: bytes, rec: UserRecord, now: int) -> dict[str, Any]:
        th = self.profile.thresholds
        state = state_at(rec.first_seen, rec.last_active, now, th)
        return {
            "user_id": uid.decode(),
            "state": state.value,
            "channel": None if rec.channel == NO_CHANNEL else rec.channel,
            "stage": self.stage_names[rec.stage] if rec.stage >= 0 else None,
            "segment": segment_of(rec, now, self.profile),
            "last_active": iso_ms(rec.last_active),
            "entered_at": iso_ms(entered_at(rec.first_seen, rec.last_active, state, th)),
        }

    async def _sources(self, f: AudienceFilter) -> list[list[str]]:
        """Per partition, the index keys' suffixes to walk, in walk order."""
        kind, fm_class = walk_index(f)
        if kind == "rfm":
            return [[f"rfm:{fm_class}"] for _ in self.q.parts]
        if f.channel is not None:
            return [[f"la:{f.channel}"] for _ in self.q.parts]
        channels = await self.q.channels_by_partition(None)
        return [[f"la:{ch}" for ch in channel_order(chans)] for chans in channels]

    async def _chunks(
        self, key: str, intervals: list[tuple[int, int]], pos: tuple[int, bytes] | None, chunk: int
    ) -> AsyncIterator[list[tuple[bytes, int]]]:
        """Members of `key` in the intervals strictly after `pos`, descending, in chunks.

        Each ZRANGE restarts at the last position seen, so what moved meanwhile cannot come
        twice; equal scores that fill a whole chunk are stepped over by offset."""
        for lo, hi in intervals:
            if pos is not None and pos[0] < lo:
                continue
            offset = 0
            while True:
                top = hi if pos is None else min(hi, pos[0])
                raw: list[tuple[bytes, int]] = await self.q.redis.zrange(  # type: ignore[assignment]
                    key,
                    score_arg(top),
                    score_arg(lo),
                    desc=True,
                    byscore=True,
                    offset=offset,
                    num=chunk,
                    withscores=True,
                    score_cast_func=int,
                )
                fresh = [(m, s) for m, s in raw if pos is None or after(s, m, pos[0], pos[1])]
                if fresh:
                    yield fresh
                    pos = (fresh[-1][1], fresh[-1][0])
                    offset = 0
                elif len(raw) == chunk:
                    offset += chunk  # a whole chunk at the cursor's score: step over it
                    continue
                if len(raw) < chunk:
                    break

    async def walk(
        self, f: AudienceFilter, cursor: Cursor | None = None, chunk: int = STREAM_CHUNK
    ) -> AsyncIterator[tuple[int, list[tuple[Cursor, bytes, UserRecord]]]]:
        """(clock, candidates) chunks from the cursor on: every candidate with its position and
        record, matching or not (the caller checks `matches` and may stop anywhere)."""
        now = await self.q.now_ms()
        intervals = la_intervals(f, now, self.profile)
        if not intervals:
            return
        sources = await self._sources(f)
        for partition, names in enumerate(sources):
            if cursor is not None and partition < cursor.partition:
                continue
            keys = self.q.parts[partition]
            for name in names:
                pos: tuple[int, bytes] | None = None
                if cursor is not None and partition == cursor.partition:
                    if _order(name) < _order(cursor.source):
                        continue
                    if name == cursor.source:
                        pos = (cursor.score, cursor.member)
                async for members in self._chunks(f"{keys.tag}:{name}", intervals, pos, chunk):
                    raws = await self.q.redis.hmget(keys.users, [m for m, _ in members])
                    out = [
                        (Cursor(partition, name, score, m), m, UserRecord.unpack(raw))
                        for (m, score), raw in zip(members, raws, strict=True)
                        if raw is not None
                    ]
                    yield now, out

    async def page(self, f: AudienceFilter, cursor: Cursor | None, limit: int) -> Page:
        """Up to `limit` users after `cursor`; `next_cursor` None when the walk is complete."""
        fingerprint = f.fingerprint()
        users: list[dict[str, Any]] = []
        examined = 0
        now: int | None = None
        async for clock, candidates in self.walk(f, cursor, chunk=min(max(limit * 2, 100), STREAM_CHUNK)):
            now = clock
            for pos, uid, rec in candidates:
                examined += 1
                if matches(f, rec, clock, self.profile):
                    users.append(self.user_json(uid, rec, clock))
                    if len(users) == limit:
                        return Page(clock, users, pos.encode(fingerprint))
                if examined >= MAX_EXAMINED_PER_PAGE:
                    return Page(clock, users, pos.encode(fingerprint))
        if now is None:
            now = await self.q.now_ms()
        return Page(now, users, None)

    async def stream(self, f: AudienceFilter) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """(clock, users) chunks of every matching user: for exports (memory stays one chunk)."""
        async for clock, candidates in self.walk(f):
            found = [
                self.user_json(uid, rec, clock)
                for _, uid, rec in candidates
                if matches(f, rec, clock, self.profile)
            ]
            if found:
                yield clock, found

    async def indexed_count(self, f: AudienceFilter) -> int | None:
        """The size from range counts alone, or None when that needs a walk."""
        terms = count_terms(f, await self.q.now_ms(), self.profile)
        return None if terms is None else await self._count_terms(terms, f.channel)

    async def count(self, f: AudienceFilter) -> int:
        """Exact size: range counts when the indexes answer the filter, else a walk."""
        now = await self.q.now_ms()
        terms = count_terms(f, now, self.profile)
        if terms is None:
            n = 0
            async for clock, candidates in self.walk(f):
                n += sum(1 for _, _, rec in candidates if matches(f, rec, clock, self.profile))
            return n
        return await self._count_terms(terms, f.channel)

    async def _count_terms(self, terms: list[Term], channel: str | None) -> int:
        if not terms:
            return 0
        channels = await self.q.channels_by_partition(channel)
        pipe = self.q.redis.pipeline(transaction=False)
        signs: list[int] = []
        for k, chans in zip(self.q.parts, channels, strict=True):
            for t in terms:
                if t.index == "rfm":
                    keys = [k.rfm(t.fm_class)]
                else:
                    keys = [k.active(ch) if t.index == "la" else k.first(ch) for ch in chans]
                for key in keys:
                    pipe.zcount(key, score_arg(t.lo), score_arg(t.hi))
                    signs.append(t.sign)
        replies = await pipe.execute()
        return sum(sign * int(n) for sign, n in zip(signs, replies, strict=True))


def _order(source: str) -> tuple[bool, str]:
    """The walk order of a partition's index keys (as `channel_order`)."""
    name = source.split(":", 1)[1]
    return (name == NO_CHANNEL, name)
