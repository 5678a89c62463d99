"""The docs say what the code does: docs/configuration.md is what the generator writes from
`Settings`, and docs/metrics.md lists exactly the metrics the code registers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from scripts.config_doc import TARGET, render
from service.core.labels import PREFIX


def test_configuration_page_is_generated_from_the_settings() -> None:
    assert TARGET.read_text() == render(), "docs/configuration.md is stale: run `make docs`"


ROOT = Path(__file__).resolve().parents[2]
METRIC_TYPES = {"Counter", "Gauge", "Histogram", "CounterMetricFamily", "GaugeMetricFamily"}


def registered_metrics() -> set[str]:
    """Every metric the code registers, as Prometheus exposes it (counters end in `_total`)."""
    found = set()
    for path in (ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.JoinedStr)):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if kind not in METRIC_TYPES:
                continue
            parts = node.args[0].values
            if not (isinstance(parts[0], ast.FormattedValue) and ast.unparse(parts[0].value) == "PREFIX"):
                continue
            name = PREFIX + "".join(str(p.value) for p in parts[1:] if isinstance(p, ast.Constant))
            if kind.startswith("Counter") and not name.endswith("_total"):
                name += "_total"
            found.add(name)
    return found


def documented_metrics() -> set[str]:
    """The metric names in the first column of docs/metrics.md's tables."""
    rows = (ROOT / "docs" / "metrics.md").read_text().splitlines()
    cells = [row.split("|")[1] for row in rows if row.startswith("| `")]
    return {name for cell in cells for name in re.findall(rf"`({PREFIX}_[a-z_]+)", cell)}


def test_every_metric_is_documented_and_every_documented_one_exists() -> None:
    registered = registered_metrics()
    assert len(registered) > 30, "the scan found too few metrics: has their registration changed?"
    documented = documented_metrics()
    assert not registered - documented, f"add to docs/metrics.md: {sorted(registered - documented)}"
    assert not documented - registered, f"no longer registered: {sorted(documented - registered)}"
