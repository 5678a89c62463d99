"""Prometheus metrics of webhook delivery; labels are status classes and results only."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from service.core.labels import PREFIX
from service.core.webhook_delivery import Verdict, status_class


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self.attempts = Counter(
            f"{PREFIX}_webhook_attempts_total", "webhook requests sent", ["status_class"], **kw
        )
        self.failures = Counter(
            f"{PREFIX}_webhook_failures_total",
            "webhook attempts that were not a 2xx",
            ["status_class"],
            **kw,
        )
        self.deliveries = Counter(
            f"{PREFIX}_webhook_deliveries_total",
            "triggers finished: delivered, or dead-lettered",
            ["result"],
            **kw,
        )
        self.latency = Histogram(
            f"{PREFIX}_webhook_latency_seconds",
            "one webhook attempt, request to answer (or timeout)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            **kw,
        )

    def attempt(self, status: int, seconds: float) -> None:
        label = status_class(status)
        self.attempts.labels(label).inc()
        self.latency.observe(seconds)
        if not 200 <= status < 300:
            self.failures.labels(label).inc()

    def finished(self, verdict: Verdict) -> None:
        self.deliveries.labels("delivered" if verdict is Verdict.DELIVERED else "dead").inc()
