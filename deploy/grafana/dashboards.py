"""Grafana dashboards as code: `python deploy/grafana/dashboards.py` writes the JSON files.

Three dashboards, provisioned from `deploy/grafana/dashboards/`: the business overview
operators plan with, the operations view of the pipeline, and the triggers with their
outcomes. Every panel queries the Prometheus datasource picked by the `$datasource`
variable (the default datasource unless chosen; `__inputs` asks for one on import), so
they import into an existing Grafana whatever its datasource is called; `$channel` filters
the per-channel series. Dashboard uids are fixed, so links to them survive new versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
INPUTS = [
    {
        "name": "DS_PROMETHEUS",
        "label": "Prometheus",
        "description": "the Prometheus that scrapes the lifecycle workers and API",
        "type": "datasource",
        "pluginId": "prometheus",
        "pluginName": "Prometheus",
    }
]
# What every Grafana dashboard carries: its own annotations and alerts on the time axis.
BUILTIN_ANNOTATIONS = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}
CH = 'channel=~"$channel"'
OUT = Path(__file__).parent / "dashboards"


def panel(
    pid: int,
    title: str,
    kind: str,
    exprs: list[tuple[str, str]],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
) -> dict[str, Any]:
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def datasource_variable() -> dict[str, Any]:
    """Which Prometheus every panel queries; on import `__inputs` fills it in."""
    return {
        "name": "datasource",
        "label": "Datasource",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        "hide": 0,
        "refresh": 1,
    }


def channel_variable() -> dict[str, Any]:
    return {
        "name": "channel",
        "label": "Channel",
        "type": "query",
        "datasource": DS,
        "query": {"query": "label_values(lifecycle_users, channel)", "refId": "channel"},
        "definition": "label_values(lifecycle_users, channel)",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "__inputs": INPUTS,
        "uid": uid,
        "title": title,
        "tags": ["lifecycle"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-7d", "to": "now"},
        "annotations": {"list": [BUILTIN_ANNOTATIONS]},
        "templating": {"list": [datasource_variable(), channel_variable()]},
        "panels": panels,
    }


def business() -> dict[str, Any]:
    return dashboard(
        "lifecycle-business",
        "Lifecycle — business overview",
        [
            panel(
                1,
                "Users per lifecycle state",
                "timeseries",
                [(f"sum by (state) (lifecycle_users{{{CH}}})", "{{state}}")],
                0,
                0,
            ),
            panel(
                2,
                "Core path funnel",
                "bargauge",
                [(f"sum by (stage) (lifecycle_funnel_users{{{CH}}})", "{{stage}}")],
                12,
                0,
            ),
            panel(
                3,
                "Stage conversion from the previous stage",
                "timeseries",
                [
                    (
                        f"sum by (stage) (lifecycle_funnel_users{{{CH}}}) / sum by (stage) (lifecycle_funnel_previous_users{{{CH}}})",
                        "{{stage}}",
                    )
                ],
                0,
                8,
                unit="percentunit",
            ),
            panel(
                4,
                "DAU / WAU / MAU",
                "timeseries",
                [(f"sum by (window) (lifecycle_active_users{{{CH}}})", "{{window}}")],
                12,
                8,
            ),
            panel(
                5,
                "Activity rate",
                "timeseries",
                [("window:lifecycle_activity:ratio", "{{window}}")],
                0,
                16,
                unit="percentunit",
            ),
            panel(
                6,
                "GMV per hour",
                "timeseries",
                [(f"sum(increase(lifecycle_revenue_total{{{CH}}}[1h]))", "GMV")],
                12,
                16,
            ),
            panel(
                7,
                "Average order value",
                "stat",
                [(f"sum(lifecycle_revenue_total{{{CH}}}) / sum(lifecycle_orders_total{{{CH}}})", "AOV")],
                0,
                24,
                w=6,
            ),
            panel(
                8,
                "Payment rate (payers / registered)",
                "stat",
                [
                    (
                        f"sum(lifecycle_paying_users{{{CH}}}) / sum(lifecycle_registered_users{{{CH}}})",
                        "payment rate",
                    )
                ],
                6,
                24,
                w=6,
                unit="percentunit",
            ),
            panel(
                9,
                "Day-N retention by channel",
                "timeseries",
                [(f"channel_after_days:lifecycle_retention:ratio{{{CH}}}", "day {{after_days}} {{channel}}")],
                12,
                24,
                unit="percentunit",
            ),
            panel(
                10,
                "Recalls per hour by the state users came back from",
                "timeseries",
                [
                    (
                        'sum by (from_state) (increase(lifecycle_transitions_total{from_state=~"silent|churned|dead", to_state=~"new|retained"}[1h]))',
                        "{{from_state}}",
                    )
                ],
                0,
                32,
            ),
            panel(
                11,
                "Channel quality",
                "table",
                [
                    (f"sum by (channel) (lifecycle_users{{{CH}}})", "users"),
                    (f"channel:lifecycle_payment:ratio{{{CH}}}", "payment rate"),
                    (
                        f"sum by (channel) (lifecycle_revenue_total{{{CH}}}) / sum by (channel) (lifecycle_users{{{CH}}})",
                        "revenue per user",
                    ),
                    (
                        f'channel_after_days:lifecycle_retention:ratio{{{CH}, after_days="7"}}',
                        "day-7 retention",
                    ),
                ],
                12,
                32,
            ),
        ],
    )


def operations() -> dict[str, Any]:
    return dashboard(
        "lifecycle-operations",
        "Lifecycle — operations",
        [
            panel(
                1,
                "Events per second by outcome",
                "timeseries",
                [("sum by (outcome) (rate(lifecycle_events_total[5m]))", "{{outcome}}")],
                0,
                0,
            ),
            panel(
                2,
                "Consumer lag (messages)",
                "timeseries",
                [("sum by (partition) (lifecycle_consumer_lag_messages)", "p{{partition}}")],
                12,
                0,
            ),
            panel(
                3,
                "Batch latency p50 / p99",
                "timeseries",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(lifecycle_batch_duration_seconds_bucket[5m])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(lifecycle_batch_duration_seconds_bucket[5m])))",
                        "p99",
                    ),
                ],
                0,
                8,
                unit="s",
            ),
            panel(
                4,
                "Event time to commit p99",
                "timeseries",
                [
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(lifecycle_event_lag_seconds_bucket[5m])))",
                        "p99",
                    )
                ],
                12,
                8,
                unit="s",
            ),
            panel(
                5,
                "Dead letters per second",
                "timeseries",
                [('sum(rate(lifecycle_events_total{outcome="rejected"}[5m]))', "dead letters")],
                0,
                16,
            ),
            panel(
                6,
                "Redis retries and fenced batches",
                "timeseries",
                [
                    ("sum(rate(lifecycle_redis_retries_total[5m]))", "Redis retries"),
                    ("sum(rate(lifecycle_fenced_total[5m]))", "fenced"),
                ],
                12,
                16,
            ),
            panel(7, "Workers up", "stat", [('sum(up{job="lifecycle-worker"})', "workers")], 0, 24, w=6),
            panel(
                8,
                "Events per batch (median)",
                "stat",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(lifecycle_batch_events_bucket[5m])))",
                        "events",
                    )
                ],
                6,
                24,
                w=6,
            ),
        ],
    )


def triggers() -> dict[str, Any]:
    fired = f'lifecycle_triggers_total{{status=~"sent|held_out",{CH}}}'
    return dashboard(
        "lifecycle-triggers",
        "Lifecycle — triggers",
        [
            panel(
                1,
                "Triggers fired per hour by type (sent + held out)",
                "timeseries",
                [(f"sum by (type) (increase({fired}[1h]))", "{{type}}")],
                0,
                0,
            ),
            panel(
                2,
                "What happened to triggers, per hour",
                "timeseries",
                [(f"sum by (status) (increase(lifecycle_triggers_total{{{CH}}}[1h]))", "{{status}}")],
                12,
                0,
            ),
            panel(
                3,
                "Recall success within the attribution window: treated vs holdout",
                "timeseries",
                [
                    (
                        "sum by (type) (increase(lifecycle_trigger_outcomes_total"
                        f'{{outcome="returned",group="treated",{CH}}}[1d]))'
                        " / sum by (type) (increase(lifecycle_triggers_total"
                        f'{{status="sent",{CH}}}[1d]))',
                        "{{type}} treated",
                    ),
                    (
                        "sum by (type) (increase(lifecycle_trigger_outcomes_total"
                        f'{{outcome="returned",group="holdout",{CH}}}[1d]))'
                        " / sum by (type) (increase(lifecycle_triggers_total"
                        f'{{status="held_out",{CH}}}[1d]))',
                        "{{type}} holdout",
                    ),
                ],
                0,
                8,
                unit="percentunit",
            ),
            panel(
                4,
                "Outcomes attributed per hour",
                "timeseries",
                [
                    (
                        f"sum by (outcome, group) (increase(lifecycle_trigger_outcomes_total{{{CH}}}[1h]))",
                        "{{outcome}} ({{group}})",
                    )
                ],
                12,
                8,
            ),
            panel(
                5,
                "Outbox: not yet relayed to Kafka",
                "stat",
                [("lifecycle_outbox_pending", "pending")],
                0,
                16,
                w=6,
            ),
            panel(
                6,
                "Users with scheduled triggers",
                "stat",
                [("lifecycle_users_with_scheduled_triggers", "users")],
                6,
                16,
                w=6,
            ),
            panel(
                7,
                "Relayed to the trigger topic per second",
                "timeseries",
                [("sum(rate(lifecycle_outbox_relayed_total[5m]))", "relayed")],
                12,
                16,
            ),
        ],
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for board in (business(), operations(), triggers()):
        (OUT / f"{board['uid']}.json").write_text(json.dumps(board, indent=2) + "\n")


if __name__ == "__main__":
    main()
