"""Lifecycle history: the API records today's populations, at most once per interval.

Every API process records (the writes are idempotent: the same clock gives the same
counts, and the latest snapshot of a day wins), so no process is special and any
number of them can run. See `service.core.history` for why snapshots are needed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from service.core import history as core
from service.storage.client import as_text
from service.storage.keys import history as history_key
from service.storage.queries import Queries

log = logging.getLogger(__name__)


class History:
    def __init__(self, queries: Queries, interval_s: float) -> None:
        self.queries = queries
        self.interval_s = interval_s
        self.key = history_key(queries.prefix)

    async def record(self) -> None:
        """Store the current counts under the clock's day, and drop days no request may ask for."""
        now = await self.queries.lifecycle()
        today = core.day_of(now["as_of"], self.queries.profile.calendar)
        redis = self.queries.redis
        await redis.hset(self.key, today, core.snapshot(now))
        old = core.expired([as_text(f) for f in await redis.hkeys(self.key)], today)
        if old:
            await redis.hdel(self.key, *old)

    async def run(self) -> None:
        """Record every interval until cancelled; a Redis outage only skips rounds."""
        while True:
            try:
                await self.record()
            except (RedisError, OSError) as exc:
                log.warning("lifecycle history not recorded: %s", exc)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py (8.1.0) can swallow a cancellation that lands mid-command; the
                # task still says it is being cancelled: stop rather than hold a shutdown.
                raise asyncio.CancelledError
            await asyncio.sleep(self.interval_s)

    async def read(self, days: int) -> dict[str, Any]:
        """The last `days` days (today included, live); days without a snapshot are left out."""
        now = await self.queries.lifecycle()
        today = core.day_of(now["as_of"], self.queries.profile.calendar)
        wanted = core.window(today, days)
        values = await self.queries.redis.hmget(self.key, wanted)
        stored = {d: v for d, v in zip(wanted, values, strict=True) if v is not None}
        return {"as_of": now["as_of"], "days": core.series(stored, today, days, now)}
