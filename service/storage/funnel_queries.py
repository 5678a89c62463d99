"""The read side of the funnels (the core path and the named ones): counters summed over
the partitions, one pipelined round trip per question, whatever the number of users."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from service.core.funnel_reports import core_definition, funnel_report, funnel_summary
from service.core.funnel_rules import CORE, NamedFunnel
from service.storage.client import as_text
from service.storage.queries import Queries
from service.storage.queries import _stored_channel as stored_channel


class NoCohorts(ValueError):
    """Weekly cohorts asked of the core path, which counts stages without entry times."""


class FunnelQueries:
    def __init__(self, queries: Queries) -> None:
        self.queries = queries
        profile = queries.profile
        self.definitions: dict[str, NamedFunnel] = {
            CORE: core_definition(profile.funnel),
            **{f.name: f for f in profile.funnels},
        }

    async def funnels(self, channel: str | None = None) -> dict[str, Any]:
        """Every funnel with its definition, users per step and overall conversion."""
        totals = await self.queries.counters()
        wanted = stored_channel(channel)
        return {
            "channel": channel,
            "funnels": [funnel_summary(f, totals, wanted) for f in self.definitions.values()],
        }

    async def funnel(
        self, name: str, channel: str | None = None, cohorts: bool = False
    ) -> dict[str, Any] | None:
        """One funnel's users per step (None for an unknown name), by entry week with `cohorts`."""
        funnel = self.definitions.get(name)
        if funnel is None:
            return None
        if cohorts and name == CORE:
            raise NoCohorts(
                "the core path keeps no entry times, so it has no weekly cohorts; "
                "define the same steps as a named funnel under `funnels:` to get them"
            )
        totals = await self.queries.counters()
        weekly = await self.cohort_totals() if cohorts else None
        return {"channel": channel, **funnel_report(funnel, totals, stored_channel(channel), weekly)}

    async def cohort_totals(self) -> dict[str, int]:
        """Every named funnel's cohort counter summed over partitions."""
        q = self.queries
        pipe = q.redis.pipeline(transaction=False)
        for k in q.parts:
            pipe.hgetall(k.funnel_cohorts)
        total: dict[str, int] = defaultdict(int)
        for reply in await pipe.execute():
            for name, value in reply.items():
                total[as_text(name)] += int(value)
        return dict(total)
