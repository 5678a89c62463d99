"""Population metrics, read from Redis at scrape time by the API process only.

Workers export what *happens* (counters per process); how many users *are* in a state
or stage is a property of the whole store, so one process reads it when Prometheus
scrapes and several workers can never double count it. Labels: channel, state, stage,
window — small fixed sets, never user ids.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.audiences import AudienceReader
from service.core import counters as ctr
from service.core.durations import DAY_MS
from service.core.lifecycle import STATES
from service.metrics import PREFIX
from service.queries import Queries


class PopulationCollector(Collector):
    """Holds the snapshot of the last `refresh()`; `collect()` (sync) only yields it."""

    def __init__(self, queries: Queries, audiences: AudienceReader | None = None) -> None:
        self.queries = queries
        self.audiences = audiences
        self._metrics: list[Metric] = []

    async def refresh(self) -> None:
        q = self.queries
        now = await q.now_ms()
        totals = await q.counters()
        active = await q.active_users(now)
        channels = sorted({ctr.split(n)[1] for n in totals if n.startswith("users|")} | set(active))
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
        for ch in channels:
            counts = (await q.lifecycle(ch, now))["counts"]
            for state in STATES:
                users.add_metric([state.value, ch], counts[state.value])
            for i, stage in enumerate(q.profile.funnel):
                funnel.add_metric([stage.name, ch], totals.get(ctr.stage(ch, i), 0))
                if i:
                    previous.add_metric([stage.name, ch], totals.get(ctr.stage(ch, i - 1), 0))
            for window, n in active.get(ch, {}).items():
                windows.add_metric([window, ch], n)
            registered.add_metric([ch], totals.get(ctr.registered(ch), 0))
            payers.add_metric([ch], totals.get(ctr.payers(ch), 0))
            orders.add_metric([ch], totals.get(ctr.orders(ch), 0))
            revenue.add_metric([ch], totals.get(ctr.revenue(ch), 0))
        segments = GaugeMetricFamily(
            f"{PREFIX}_rfm_users", "Users per RFM segment at the clock.", labels=["segment"]
        )
        for segment, n in (await q.rfm_segments(now)).items():
            segments.add_metric([segment], n)
        today = now // DAY_MS
        for after_days in q.profile.retention_days:
            for ch in channels:
                day = (await q.retention(today - after_days, today - after_days, ch))["cohorts"][0]
                cohort.add_metric([str(after_days), ch], day["users"])
                retained.add_metric([str(after_days), ch], day["retained"][str(after_days)]["users"])
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
        sizes = GaugeMetricFamily(
            f"{PREFIX}_audience_users",
            "Users in each named audience of the profile at the clock.",
            labels=["audience"],
        )
        if self.audiences is not None:
            for audience in q.profile.audiences:
                sizes.add_metric([audience.name], await self.audiences.count(audience.filter))
        self._metrics = [
            sizes,
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
