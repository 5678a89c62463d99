"""Population metrics, read from Redis at scrape time by the API process only.

Workers export what *happens* (counters per process); how many users *are* in a state
or stage is a property of the whole store, so one process reads it when Prometheus
scrapes and several workers can never double count it. Labels: channel, state, stage,
window — never user ids. Channels come from events: the largest `max_channels` - 1 get a
label, the rest are added up under `~other`, so a flood of made-up channels neither
grows the series nor the per-scrape Redis queries beyond the bound.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.core import counters as ctr
from service.core.durations import DAY_MS
from service.core.labels import OTHER_CHANNELS, PREFIX
from service.core.lifecycle import STATES
from service.storage.audiences import AudienceReader
from service.storage.queries import Queries


class PopulationCollector(Collector):
    """Holds the snapshot of the last `refresh()`; `collect()` (sync) only yields it."""

    def __init__(
        self, queries: Queries, max_channels: int = 50, audiences: AudienceReader | None = None
    ) -> None:
        self.queries = queries
        self.max_channels = max_channels
        self.audiences = audiences
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
            "Users whose last activity is within the window (dau 1d, wau 7d, mau 30d).",
            labels=["window", "channel"],
        )
        previous = GaugeMetricFamily(
            f"{PREFIX}_funnel_previous_users",
            "Users at the stage before each funnel stage (the denominator of stage conversion).",
            labels=["stage", "channel"],
        )
        cohort = GaugeMetricFamily(
            f"{PREFIX}_cohort_users",
            "Users first seen N days before the clock's day (the cohort of day-N retention).",
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
        today = now // DAY_MS
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
        audience_sizes = GaugeMetricFamily(
            f"{PREFIX}_audience_users",
            "Users in each named audience of the profile at the clock.",
            labels=["audience"],
        )
        if self.audiences is not None:
            for audience in q.profile.audiences:
                audience_sizes.add_metric([audience.name], await self.audiences.count(audience.filter))
        self._metrics = [
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

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


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
