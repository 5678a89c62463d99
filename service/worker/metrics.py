"""Prometheus metrics of the worker: counters of what happens, per process.

Labels come from small fixed sets only (outcome, transition states, stage index, known
event types) and from channels, of which at most `LIFECYCLE_METRICS_MAX_CHANNELS` get a
label (the rest share `~other`); never user ids or event properties. Population gauges
are read from Redis at scrape time by the API process (see `service.api.population`), so
several workers never double count.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.core import counters as ctr
from service.core.gaps import BOUNDS_MS
from service.core.labels import PREFIX, ChannelLabels
from service.core.records import NO_CHANNEL
from service.core.trigger_rules import KINDS, RECALL_STATES, recall_plan
from service.core.triggers import STATUSES, Fired

OUTCOMES = ("applied", "duplicates", "rejected", "misrouted", "replayed", "undeliverable")


_ERASURE_ACTIONS = {ctr.ERASED: "erase", ctr.RESTORED: "restore"}
_MERGE_STEPS = {
    ctr.MERGED_OUT: "out",
    ctr.MERGED_IN: "in",
    ctr.MERGES_IGNORED: "ignored",
    ctr.MERGE_CYCLES: "cycle",
}


def observe_all(histogram: Histogram, values: list[float]) -> None:
    """Observe each of `values`, with one increment per bucket and one of the sum: what
    `observe` does value by value (a batch's lags are one per event), at a tenth of its cost.
    It uses the client's own bucket and sum values, as `observe` does (checked against it in
    tests/unit/test_metrics_batching.py)."""
    if not values:
        return
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    histogram._sum.inc(sum(values))
    for bucket, n in zip(histogram._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, max_channels: int = 50) -> None:
        self.channel = ChannelLabels(max_channels)
        kw = {"registry": registry} if registry is not None else {}
        self.events = Counter(
            f"{PREFIX}_events_total",
            "Events seen by the worker, by outcome (applied, duplicate, rejected, misrouted, replayed).",
            ["outcome"],
            **kw,  # type: ignore[arg-type]
        )
        self.erasures = Counter(
            f"{PREFIX}_erasures_total",
            "Erase and restore requests applied (the user left, or the suppression was lifted).",
            ["action"],
            **kw,  # type: ignore[arg-type]
        )
        self.merges = Counter(
            f"{PREFIX}_identity_merges_total",
            "Identity merge steps applied: out (an id's record sent to the id it went into), in "
            "(folded there), ignored (merged already, or into itself), cycle (dropped after going round).",
            ["step"],
            **kw,  # type: ignore[arg-type]
        )
        self.events_by_type = Counter(
            f"{PREFIX}_events_applied_by_type_total",
            "Applied events by event type (types outside the profile count as 'other').",
            ["type"],
            **kw,  # type: ignore[arg-type]
        )
        self.transitions = Counter(
            f"{PREFIX}_transitions_total",
            "Lifecycle transitions; from_state '-' is a user's first appearance.",
            ["from_state", "to_state"],
            **kw,  # type: ignore[arg-type]
        )
        self.stage_entries = Counter(
            f"{PREFIX}_stage_entries_total",
            "Users entering a funnel stage (index into the profile's funnel), by channel.",
            ["stage", "channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.orders = Counter(
            f"{PREFIX}_orders_applied_total",
            "Orders and renewals applied, by channel.",
            ["channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.revenue = Counter(
            f"{PREFIX}_revenue_applied_total",
            "Revenue of applied orders and renewals, by channel.",
            ["channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.lag = Histogram(
            f"{PREFIX}_event_lag_seconds",
            "Event time to Redis commit, per applied event (large while replaying history).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
            **kw,  # type: ignore[arg-type]
        )
        self.time_to_convert = Histogram(
            f"{PREFIX}_time_to_convert_seconds",
            "Time from a user's first event to reaching a funnel stage (index into the profile's funnel).",
            ["stage"],
            buckets=[b / 1000 for b in BOUNDS_MS],
            **kw,  # type: ignore[arg-type]
        )
        self.redis_seconds = Histogram(
            f"{PREFIX}_redis_duration_seconds",
            "Worker Redis round trips: `load` (a batch's state) and `commit` (the fenced script).",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            **kw,  # type: ignore[arg-type]
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Messages of a partition not yet applied (high watermark minus next offset).",
            ["partition"],
            **kw,  # type: ignore[arg-type]
        )
        self.batches = Counter(
            f"{PREFIX}_batches_total",
            "Committed batches.",
            ["kind"],
            **kw,  # type: ignore[arg-type]
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_duration_seconds",
            "Wall time from a batch's arrival to its Redis commit.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            **kw,  # type: ignore[arg-type]
        )
        self.batch_events = Histogram(
            f"{PREFIX}_batch_events",
            "Events per committed batch.",
            buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
            **kw,  # type: ignore[arg-type]
        )
        self.redis_retries = Counter(
            f"{PREFIX}_redis_retries_total",
            "Batch commits retried after a Redis error.",
            **kw,  # type: ignore[arg-type]
        )
        self.return_gap = Histogram(
            f"{PREFIX}_return_gap_seconds",
            "Time a returning user had been idle (activity at least an hour after the previous one).",
            ["channel"],
            buckets=[b / 1000 for b in BOUNDS_MS],
            **kw,  # type: ignore[arg-type]
        )
        self.fenced = Counter(
            f"{PREFIX}_fenced_total",
            "Batches dropped because another worker owns the partition now.",
            **kw,  # type: ignore[arg-type]
        )
        self.redis_unavailable = Gauge(
            f"{PREFIX}_redis_unavailable",
            "1 while the worker pauses because Redis does not answer (nothing is committed then).",
            **kw,  # type: ignore[arg-type]
        )
        self.log_rebased = Counter(
            f"{PREFIX}_log_rebased_total",
            "Partitions whose applied offset was reset because the events topic is a new log "
            "(another topic id: recreated, or a memory-only broker restarted).",
            **kw,  # type: ignore[arg-type]
        )
        self.triggers = Counter(
            f"{PREFIX}_triggers_total",
            "Triggers by type and what happened to them (sent, held_out, capped, suppressed, "
            "cancelled, deferred), by channel.",
            ["type", "status", "channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.trigger_outcomes = Counter(
            f"{PREFIX}_trigger_outcomes_total",
            "Outcomes attributed to fired triggers (delivered, clicks, payments, return, order), "
            "in the treated or the holdout group.",
            ["type", "outcome", "group", "channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.recalls = Counter(
            f"{PREFIX}_recall_triggers_total",
            "Recall triggers by the state the user was recalled from (origin) and its plan "
            "(transaction for silent and churned, login for dead), by what happened to them.",
            ["origin", "plan", "status", "channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.recall_outcomes = Counter(
            f"{PREFIX}_recall_outcomes_total",
            "Outcomes attributed to recalls by origin state and plan, treated or holdout; "
            "outcome=returned is recall success.",
            ["origin", "plan", "outcome", "group", "channel"],
            **kw,  # type: ignore[arg-type]
        )
        self.advisor_triggers = Counter(
            f"{PREFIX}_triggers_advisor_total",
            "Fired triggers flagged for the advisor channel (high-value users).",
            ["type"],
            **kw,  # type: ignore[arg-type]
        )
        self.relayed = Counter(
            f"{PREFIX}_outbox_relayed_total",
            "Trigger CloudEvents relayed from the Redis outbox to the trigger topic (acknowledged).",
            **kw,  # type: ignore[arg-type]
        )
        self._init_children()

    def _init_children(self) -> None:
        """Known label values exist from the start, so rates and alerts see zeros, not gaps."""
        for outcome in OUTCOMES:
            self.events.labels(outcome)
        self.batches.labels("events")
        self.redis_load = self.redis_seconds.labels("load")
        self.redis_commit = self.redis_seconds.labels("commit")
        self.batches.labels("sweep")
        for kind in KINDS:
            for status in STATUSES:
                self.triggers.labels(kind, status, self.channel(NO_CHANNEL))
            self.advisor_triggers.labels(kind)
        for origin in RECALL_STATES:
            for status in STATUSES:
                self.recalls.labels(origin, recall_plan(origin), status, self.channel(NO_CHANNEL))

    def record_triggers(self, fired: Sequence[Fired]) -> None:
        for f in fired:
            if f.advisor:
                self.advisor_triggers.labels(f.kind).inc()

    def record_sums(self, sums: Mapping[str, float]) -> None:
        for name, delta in sums.items():
            if delta > 0 and name.startswith("revenue|"):
                self.revenue.labels(self.channel(ctr.split(name)[1])).inc(delta)

    def record_lag(self, committed_at_ms: int, event_times: list[int]) -> None:
        observe_all(self.lag, [max(0, committed_at_ms - ts) / 1000 for ts in event_times])

    def record_conversions(self, conversions: list[tuple[int, int]]) -> None:
        by_stage: dict[int, list[float]] = defaultdict(list)
        for stage, ms in conversions:
            by_stage[stage].append(ms / 1000)
        for stage, values in by_stage.items():
            observe_all(self.time_to_convert.labels(str(stage)), values)

    def record_gaps(self, gaps: list[tuple[str, int]]) -> None:
        by_channel: dict[str, list[float]] = defaultdict(list)
        for channel, gap_ms in gaps:
            by_channel[channel].append(gap_ms / 1000)
        for channel, values in by_channel.items():
            observe_all(self.return_gap.labels(self.channel(channel)), values)

    def record_counts(self, counts: Mapping[str, int]) -> None:
        """Mirror the committed counter deltas into the process's Prometheus counters."""
        for name, delta in counts.items():
            if delta <= 0:
                continue
            parts = ctr.split(name)
            if parts[0] == "tr":
                self.transitions.labels(parts[1], parts[2]).inc(delta)
            elif parts[0] == "ev":
                self.events_by_type.labels(parts[1]).inc(delta)
            elif parts[0] == "stage":
                self.stage_entries.labels(parts[2], self.channel(parts[1])).inc(delta)
            elif parts[0] == "tg":
                self.triggers.labels(parts[1], parts[3], self.channel(parts[2])).inc(delta)
            elif parts[0] == "to":
                self.trigger_outcomes.labels(parts[1], parts[4], parts[3], self.channel(parts[2])).inc(delta)
            elif parts[0] == "tgr":
                plan = recall_plan(parts[1])
                self.recalls.labels(parts[1], plan, parts[3], self.channel(parts[2])).inc(delta)
            elif parts[0] == "tor":
                origin, channel = parts[1], self.channel(parts[2])
                plan = recall_plan(origin)
                self.recall_outcomes.labels(origin, plan, parts[4], parts[3], channel).inc(delta)
            elif parts[0] == "orders":
                self.orders.labels(self.channel(parts[1])).inc(delta)
            elif name == ctr.SUPPRESSED:
                self.events.labels("suppressed").inc(delta)
            elif name in _ERASURE_ACTIONS:
                self.erasures.labels(_ERASURE_ACTIONS[name]).inc(delta)
            elif name in _MERGE_STEPS:
                self.merges.labels(_MERGE_STEPS[name]).inc(delta)
            elif name == ctr.MERGED_EVENTS:
                self.events.labels("merged_id").inc(delta)
