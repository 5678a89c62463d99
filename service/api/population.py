"""Population metrics, read from Redis at scrape time by one API process at a time.

Workers export what *happens* (counters per process); how many users *are* in a state
or stage is a property of the whole store, so it must come from one target only: the
API replicas share a lease in Redis and only its holder exports the population families
(every replica says with `lifecycle_population_exporter` whether it is the one), so a
`sum` over all targets is the store's number and a dead holder is replaced within the
lease time. The holder reuses what it computed for `metrics_cache` seconds, and walks at
most `metrics_max_audience_walks` named audiences per computation, so scrapes cost Redis
a bounded amount however often and however many come. Labels: channel, state, stage,
window — never user ids. Channels come from events: the largest `max_channels` - 1 get a
label, the rest are added up under `~other`, so a flood of made-up channels neither
grows the series nor the per-scrape Redis queries beyond the bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from service.core import counters as ctr
from service.core.funnel_reports import cohort_users, steps_by_channel
from service.core.interval_lifecycle import KINDS
from service.core.intervals import GRANULARITIES
from service.core.labels import OTHER_CHANNELS, PREFIX
from service.core.lifecycle import STATES
from service.core.named_funnels import week_of
from service.settings import Settings
from service.storage.audiences import AudienceReader
from service.storage.funnel_queries import FunnelQueries
from service.storage.intervals import interval_lifecycle
from service.storage.queries import Queries
from service.storage.scripts import LEASE_HOLD, LEASE_RELEASE

log = logging.getLogger(__name__)
COHORT_WEEKS = 4  # weekly funnel cohorts exported: this week and the three before


class PopulationCollector(Collector):
    """Holds the snapshot of the last `refresh()`; `collect()` (sync) only yields it."""

    def __init__(
        self,
        queries: Queries,
        max_channels: int = 50,
        audiences: AudienceReader | None = None,
        max_audience_walks: int = 10,
    ) -> None:
        self.queries = queries
        self.max_channels = max_channels
        self.audiences = audiences
        self.max_audience_walks = max_audience_walks
        self.funnels = FunnelQueries(queries)
        self._metrics: list[Metric] = []

    async def refresh(self) -> None:
        q = self.queries
        now = await q.now_ms()
        totals = await q.counters()
        active = await q.active_users(now)
        channels = sorted({ctr.split(n)[1] for n in totals if n.startswith("users|")} | set(active))
        others: list[str] = []
        if len(channels) > self.max_channels:  # the largest keep a label; the rest are summed
            by_size = sorted(channels, key=lambda ch: (-totals.get(ctr.users(ch), 0), ch))
            channels, others = sorted(by_size[: self.max_channels - 1]), by_size[self.max_channels - 1 :]
        users = GaugeMetricFamily(
            f"{PREFIX}_users", "Users per lifecycle state at the clock.", labels=["state", "channel"]
        )
        funnel = GaugeMetricFamily(
            f"{PREFIX}_funnel_users",
            "Users who reached each funnel stage (monotone).",
            labels=["stage", "channel"],
        )
        windows = GaugeMetricFamily(
            f"{PREFIX}_active_users",
            "Users active on the clock's local day (dau), or in the 7 (wau) or 30 (mau) local days "
            "ending with it.",
            labels=["window", "channel"],
        )
        previous = GaugeMetricFamily(
            f"{PREFIX}_funnel_previous_users",
            "Users at the stage before each funnel stage (the denominator of stage conversion).",
            labels=["stage", "channel"],
        )
        cohort = GaugeMetricFamily(
            f"{PREFIX}_cohort_users",
            "Users first seen N local days before the clock's day (the cohort of day-N retention).",
            labels=["after_days", "channel"],
        )
        retained = GaugeMetricFamily(
            f"{PREFIX}_retained_users",
            "Of that cohort, users active again on the clock's day (day-N retention).",
            labels=["after_days", "channel"],
        )
        registered = GaugeMetricFamily(
            f"{PREFIX}_registered_users", "Users with a register event.", labels=["channel"]
        )
        payers = GaugeMetricFamily(
            f"{PREFIX}_paying_users", "Users with at least one order.", labels=["channel"]
        )
        orders = CounterMetricFamily(f"{PREFIX}_orders", "Orders and renewals applied.", labels=["channel"])
        revenue = CounterMetricFamily(
            f"{PREFIX}_revenue", "Revenue (GMV) of orders and renewals.", labels=["channel"]
        )
        per_channel: dict[str, dict[str, int]] = {}
        lifecycle_all: dict[str, int] = {}
        if others:
            lifecycle_all = (await q.lifecycle(None, now))["counts"]
        for ch in [*channels, *([OTHER_CHANNELS] if others else [])]:
            if ch == OTHER_CHANNELS:  # every channel without a label: the total minus the labelled
                counts = {
                    st: n - sum(per_channel[c][st] for c in channels) for st, n in lifecycle_all.items()
                }
                summed = _summed(totals, others)
            else:
                counts = per_channel[ch] = (await q.lifecycle(ch, now))["counts"]
                summed = totals
            for state in STATES:
                users.add_metric([state.value, ch], counts[state.value])
            for i, stage in enumerate(q.profile.funnel):
                funnel.add_metric([stage.name, ch], summed.get(ctr.stage(ch, i), 0))
                if i:
                    previous.add_metric([stage.name, ch], summed.get(ctr.stage(ch, i - 1), 0))
            windows_of = active.get(ch, {}) if ch != OTHER_CHANNELS else _summed_windows(active, others)
            for window, n in windows_of.items():
                windows.add_metric([window, ch], n)
            registered.add_metric([ch], summed.get(ctr.registered(ch), 0))
            payers.add_metric([ch], summed.get(ctr.payers(ch), 0))
            orders.add_metric([ch], summed.get(ctr.orders(ch), 0))
            revenue.add_metric([ch], summed.get(ctr.revenue(ch), 0))
        segments = GaugeMetricFamily(
            f"{PREFIX}_rfm_users", "Users per RFM segment at the clock.", labels=["segment"]
        )
        for segment, n in (await q.rfm_segments(now)).items():
            segments.add_metric([segment], n)
        today = q.profile.calendar.day(now)
        for after_days in q.profile.retention_days:
            sizes: dict[str | None, tuple[int, int]] = {}
            for name in [*channels, *([None] if others else [])]:
                day = (await q.retention(today - after_days, today - after_days, name))["cohorts"][0]
                sizes[name] = (day["users"], day["retained"][str(after_days)]["users"])
            if others:
                total = sizes.pop(None)
                sizes[OTHER_CHANNELS] = (
                    total[0] - sum(n for n, _ in sizes.values()),
                    total[1] - sum(r for _, r in sizes.values()),
                )
            for label, (n, r) in sizes.items():
                assert label is not None
                cohort.add_metric([str(after_days), label], n)
                retained.add_metric([str(after_days), label], r)
        funnel_families = await self._funnels(totals, now, channels, others)
        outbox, scheduled = await q.trigger_backlog()
        pending = GaugeMetricFamily(
            f"{PREFIX}_outbox_pending",
            "Fired triggers committed to the Redis outbox and not yet acknowledged by Kafka.",
        )
        pending.add_metric([], outbox)
        waiting = GaugeMetricFamily(
            f"{PREFIX}_users_with_scheduled_triggers",
            "Users with a renewal, expiry, onboarding or deferred trigger scheduled.",
        )
        waiting.add_metric([], scheduled)
        intervals = GaugeMetricFamily(
            f"{PREFIX}_interval_users",
            "Users new, returning, resurrecting and dormant in the current day, week and month "
            "(of the profile's time zone; all channels).",
            labels=["interval", "kind"],
        )
        local_today = q.profile.calendar.day(now)
        for g in GRANULARITIES:
            body = await interval_lifecycle(q, g, local_today, local_today)
            (row,) = body["intervals"] or [dict.fromkeys(KINDS, 0)]
            for kind in KINDS:
                intervals.add_metric([g, kind], row[kind])
        audience_sizes = GaugeMetricFamily(
            f"{PREFIX}_audience_users",
            "Users in each named audience of the profile at the clock.",
            labels=["audience"],
        )
        if self.audiences is not None:
            await self._audience_sizes(self.audiences, audience_sizes)
        self._metrics = [
            *funnel_families,
            intervals,
            audience_sizes,
            pending,
            waiting,
            users,
            funnel,
            previous,
            windows,
            cohort,
            retained,
            registered,
            payers,
            orders,
            revenue,
        ]

    async def _funnels(
        self, totals: dict[str, float], now: int, channels: list[str], others: list[str]
    ) -> list[Metric]:
        """Users per step of every funnel (core and named) by channel, and of the named ones by
        the week the users entered, for the clock's week and the `COHORT_WEEKS` - 1 before it."""
        definitions = list(self.funnels.definitions.values())
        steps = GaugeMetricFamily(
            f"{PREFIX}_funnel_step_users",
            "Users at each step of each funnel (core: the core path) or further.",
            labels=["funnel", "step", "channel"],
        )
        cohorts = GaugeMetricFamily(
            f"{PREFIX}_funnel_cohort_users",
            "Users at each step of a named funnel or further, of those who entered it N weeks "
            "(Monday-based, in the profile's time zone) before the clock's week.",
            labels=["funnel", "step", "weeks_ago"],
        )
        table = steps_by_channel(totals, definitions)
        for funnel in definitions:
            per = table[funnel.name]
            zeros = [0] * len(funnel.steps)
            rows = [(ch, per.get(ch, zeros)) for ch in channels]
            if others:
                rows.append(
                    (OTHER_CHANNELS, [sum(per.get(ch, zeros)[k] for ch in others) for k in range(len(zeros))])
                )
            for ch, users in rows:
                for step, n in zip(funnel.steps, users, strict=True):
                    steps.add_metric([funnel.name, step.name, ch], n)
        named = [f for f in definitions if f in self.queries.profile.funnels]
        if named:
            weekly = await self.funnels.cohort_totals()
            this_week = week_of(self.queries.profile.calendar.day(now))
            for funnel in named:
                by_week = cohort_users(weekly, funnel, None)
                for ago in range(COHORT_WEEKS):
                    users = by_week.get(this_week - 7 * ago, [0] * len(funnel.steps))
                    for step, n in zip(funnel.steps, users, strict=True):
                        cohorts.add_metric([funnel.name, step.name, str(ago)], n)
        return [steps, cohorts]

    async def _audience_sizes(self, reader: AudienceReader, family: GaugeMetricFamily) -> None:
        """Sizes from range counts for every named audience; walks for at most the bound."""
        skipped: list[str] = []
        walks = 0
        for audience in self.queries.profile.audiences:
            size = await reader.indexed_count(audience.filter)
            if size is None:
                if walks >= self.max_audience_walks:
                    skipped.append(audience.name)
                    continue
                walks += 1
                size = await reader.count(audience.filter)
            family.add_metric([audience.name], size)
        if skipped:
            log.warning(
                "metrics: %d named audiences need a walk of their users and are over "
                "LIFECYCLE_METRICS_MAX_AUDIENCE_WALKS=%d, so they have no lifecycle_audience_users "
                "series: %s",
                len(skipped),
                self.max_audience_walks,
                ", ".join(skipped),
            )

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


class ExporterLease:
    """A lease in Redis that one API process holds at a time (SET NX PX, extended by its holder)."""

    def __init__(self, queries: Queries, seconds: float) -> None:
        self.redis = queries.redis
        self.key = f"{queries.prefix}:metrics:exporter"
        self.ms = max(1, int(seconds * 1000))
        self.token = os.urandom(16).hex()
        self._hold = self.redis.register_script(LEASE_HOLD)
        self._release = self.redis.register_script(LEASE_RELEASE)

    async def hold(self) -> bool:
        """Take or extend the lease: whether this process holds it for the lease time now."""
        return bool(await self._hold(keys=[self.key], args=[self.token, self.ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])

    async def keep(self) -> None:
        """Extend (or take) the lease every third of its time, so the holder keeps it between
        scrapes however far apart they are, and a free lease finds a holder before a scrape."""
        while True:
            with suppress(RedisError, OSError):
                await self.hold()
            await asyncio.sleep(self.ms / 3000)


class PopulationMetrics:
    """The population part of /metrics: the lease holder's cached snapshot, or nothing."""

    def __init__(self, queries: Queries, settings: Settings, audiences: AudienceReader | None) -> None:
        self.collector = PopulationCollector(
            queries, settings.metrics_max_channels, audiences, settings.metrics_max_audience_walks
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.lease = ExporterLease(queries, settings.metrics_lease)
        self.cache_s = settings.metrics_cache
        self._body = b""
        self._at = -float("inf")
        self._lock = asyncio.Lock()

    async def scrape(self) -> bytes:
        """The exposition text: the `lifecycle_population_exporter` gauge, and the population
        families when this process holds the lease (computed at most once per cache time)."""
        if not await self.lease.hold():
            self._at = -float("inf")  # when the lease comes back, compute afresh
            return _exporter(0)
        async with self._lock:  # concurrent scrapes wait for one computation
            if time.monotonic() - self._at >= self.cache_s:
                await self.collector.refresh()
                self._body = generate_latest(self.registry)
                self._at = time.monotonic()
            return _exporter(1) + self._body


class _Fixed(Collector):
    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _exporter(value: int) -> bytes:
    family = GaugeMetricFamily(
        f"{PREFIX}_population_exporter",
        "1 when this API process holds the lease and exports the population gauges, else 0.",
    )
    family.add_metric([], value)
    return generate_latest(_Fixed(family))


def _summed(totals: dict[str, Any], channels: list[str]) -> dict[str, float]:
    """The per-channel counters of `channels` added up under the channel `~other`."""
    members = set(channels)
    out: dict[str, float] = defaultdict(float)
    for name, value in totals.items():
        parts = ctr.split(name)
        if len(parts) > 1 and parts[1] in members:
            out[ctr.SEP.join([parts[0], OTHER_CHANNELS, *parts[2:]])] += value
    return out


def _summed_windows(active: dict[str, dict[str, int]], channels: list[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for ch in channels:
        for window, n in active.get(ch, {}).items():
            out[window] += n
    return out
