"""Audiences read from Redis: pages, streams and sizes, from the per-partition indexes.

The plan (which `last_active` intervals of which index hold the audience) is the pure
core's (`service.core.audiences`); this module walks it. A walk reads candidates in
chunks (one script call per chunk: the index range and the members' records), checks
each with `row_maker` (the compiled form of `matches`) and never reads a partition's
users beyond the planned intervals.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from service.core.audience_filters import AudienceFilter
from service.core.audiences import (
    AudienceRow,
    Cursor,
    Interval,
    Term,
    channel_order,
    count_terms,
    la_intervals,
    row_maker,
    score_arg,
    walk_index,
)
from service.core.records import NO_CHANNEL
from service.storage.keys import PartitionKeys
from service.storage.queries import Queries
from service.storage.scripts import AUDIENCE_CHUNK

MAX_EXAMINED_PER_PAGE = 50_000  # candidates checked for one page, so a narrow filter answers in bounded time
STREAM_CHUNK = 4_000  # members per script call (its HMGET unpacks them: Lua's limit is 8,000)
Candidate = tuple[str, int, list[Any]]  # user id, score in the walked index, packed record fields


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC while a chunk's thousands of acyclic objects are built (no await inside):
    otherwise collections triggered by them scan every live object of the process again and
    again, which halved the export rate. Reference counting still frees them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Page:
    as_of: int
    users: list[dict[str, Any]]
    next_cursor: str | None


class AudienceReader:
    """Walks and counts audiences at the current clock over every partition."""

    def __init__(self, queries: Queries, cursor_key: bytes | None = None) -> None:
        """`cursor_key` signs the pages' cursors; without one, a random key of this process."""
        self.q = queries
        self.cursor_key = cursor_key or os.urandom(32)
        self._read = queries.redis.register_script(AUDIENCE_CHUNK)
        self.profile = queries.profile
        self.stage_names = [s.name for s in queries.profile.funnel]

    async def _sources(self, f: AudienceFilter) -> list[list[tuple[str, str]]]:
        """Per partition, the indexes to walk in walk order: (name for the cursor, key)."""
        kind, fm_class = walk_index(f)
        if kind == "rfm":
            return [[(f"rfm:{fm_class}", k.rfm(fm_class))] for k in self.q.parts]
        if f.channel is not None:
            return [[(f"la:{f.channel}", k.active(f.channel))] for k in self.q.parts]
        channels = await self.q.channels_by_partition(None)
        return [
            [(f"la:{ch}", k.active(ch)) for ch in channel_order(chans)]
            for k, chans in zip(self.q.parts, channels, strict=True)
        ]

    async def _chunks(
        self,
        keys: PartitionKeys,
        index: str,
        intervals: list[Interval],
        pos: tuple[int, bytes] | None,
        chunk: int,
        prefetch: bool,
    ) -> AsyncIterator[list[Candidate]]:
        """Members of `index` (a sorted set of partition `keys`) in the intervals strictly after
        `pos`, descending, in chunks, each with its score and record (one script call each).

        Each call starts right after the last (score, member) seen, found by rank in Redis,
        so what moved meanwhile cannot come twice and equal scores cost no more than distinct
        ones. `prefetch` (exports) sends the next call before this chunk is used, so Redis and
        Python overlap."""

        def read(top: int, lo: int, at: bytes | None) -> Awaitable[bytes]:
            args: list[str | int | bytes] = [top, lo, chunk, *(("1", at) if at is not None else ("0",))]
            return asyncio.ensure_future(self._read(keys=[index, keys.users], args=args))

        ahead: Awaitable[bytes] | None = None
        try:
            for lo, hi in intervals:
                if pos is not None and pos[0] < lo:
                    continue
                top, at = (hi, None) if pos is None or pos[0] > hi else pos
                while True:
                    reply = await (ahead or read(top, lo, at))
                    ahead = None
                    with paused_gc():
                        got: list[list[Any]] = orjson.loads(reply)
                        found = [(m, score, rec) for m, score, rec in got if rec is not None]
                    if got:
                        top, at = got[-1][1], got[-1][0].encode()
                        pos = (top, at)
                        if prefetch and len(got) == chunk:  # the next read overlaps this chunk's use
                            ahead = read(top, lo, at)
                        yield found
                    if len(got) < chunk:
                        break
        finally:
            if isinstance(ahead, asyncio.Future):
                ahead.cancel()

    async def walk(
        self,
        f: AudienceFilter,
        cursor: Cursor | None = None,
        chunk: int = STREAM_CHUNK,
        prefetch: bool = False,
    ) -> AsyncIterator[tuple[int, int, str, list[Candidate]]]:
        """(clock, partition, index, candidates) chunks from the cursor on: every candidate
        with its score and record, matching or not (the caller checks `matches`)."""
        now = await self.q.now_ms()
        intervals = la_intervals(f, now, self.profile)
        if not intervals:
            return
        sources = await self._sources(f)
        for partition, names in enumerate(sources):
            if cursor is not None and partition < cursor.partition:
                continue
            for name, index in names:
                pos: tuple[int, bytes] | None = None
                if cursor is not None and partition == cursor.partition:
                    if _order(name) < _order(cursor.source):
                        continue
                    if name == cursor.source:
                        pos = (cursor.score, cursor.member)
                keys = self.q.parts[partition]
                async for candidates in self._chunks(keys, index, intervals, pos, chunk, prefetch):
                    yield now, partition, name, candidates

    async def page(self, f: AudienceFilter, cursor: Cursor | None, limit: int) -> Page:
        """Up to `limit` users after `cursor`; `next_cursor` None when the walk is complete."""
        fingerprint = f.fingerprint()
        users: list[dict[str, Any]] = []
        examined = 0
        now: int | None = None
        chunk = min(max(limit * 2, 100), STREAM_CHUNK)
        async for clock, partition, name, candidates in self.walk(f, cursor, chunk):
            now = clock
            row = row_maker(f, clock, self.profile, self.stage_names)
            for uid, score, fields in candidates:
                examined += 1
                full = False
                found = row(uid, fields)
                if found is not None:
                    users.append(found)
                    full = len(users) == limit
                if full or examined >= MAX_EXAMINED_PER_PAGE:
                    at = Cursor(partition, name, score, uid.encode())
                    return Page(clock, users, at.encode(fingerprint, self.cursor_key))
        if now is None:
            now = await self.q.now_ms()
        return Page(now, users, None)

    async def stream(self, f: AudienceFilter) -> AsyncIterator[tuple[int, list[AudienceRow]]]:
        """(clock, users) chunks of every matching user: for exports (memory stays one chunk)."""
        async for clock, _, _, candidates in self.walk(f, prefetch=True):
            row = row_maker(f, clock, self.profile, self.stage_names)
            with paused_gc():
                found = [r for r in (row(uid, fields) for uid, _, fields in candidates) if r is not None]
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
            async for clock, _, _, candidates in self.walk(f, prefetch=True):
                row = row_maker(f, clock, self.profile, self.stage_names)
                n += sum(1 for uid, _, fields in candidates if row(uid, fields) is not None)
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
