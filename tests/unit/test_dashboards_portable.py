"""The dashboards import into any Grafana: panels query the datasource chosen by a
`datasource` template variable (never a fixed uid), `__inputs` asks for it on import,
and the dashboards' own uids stay the same across versions so links keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
VARIABLE = {"type": "prometheus", "uid": "${datasource}"}


def datasources(node: Any) -> list[Any]:
    """Every `datasource` reference anywhere in the document."""
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [d for value in node.values() for d in datasources(value)]
    if isinstance(node, list):
        return [d for value in node for d in datasources(value)]
    return []


def test_uids_are_stable() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in BOARDS}
    assert uids == {"lifecycle-business", "lifecycle-operations", "lifecycle-triggers"}


def test_every_query_uses_the_datasource_variable() -> None:
    for path in BOARDS:
        board = json.loads(path.read_text())
        variables = board["templating"]["list"]
        first = variables[0]
        assert first["name"] == "datasource" and first["type"] == "datasource", path.name
        assert first["query"] == "prometheus"
        refs = datasources({k: v for k, v in board.items() if k not in ("templating", "annotations")})
        refs += datasources(variables[1:])
        assert refs and all(ref == VARIABLE for ref in refs), path.name
        assert "lifecycle-prometheus" not in path.read_text()
        # the only annotations are Grafana's own (its built-in datasource, in every Grafana)
        assert datasources(board["annotations"]) == [{"type": "grafana", "uid": "-- Grafana --"}]


def test_import_asks_for_a_prometheus_datasource() -> None:
    for path in BOARDS:
        inputs = json.loads(path.read_text())["__inputs"]
        assert inputs == [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "the Prometheus that scrapes the lifecycle workers and API",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
