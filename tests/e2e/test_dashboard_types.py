"""The dashboards decode strictly into the Grafana Foundation SDK's types.

No Grafana server can run here (Debian has no package, and nothing may be pulled from
Docker Hub), so `scripts/dashboard-check` stands in for the import: each dashboard, its
panels and their Prometheus queries are decoded into the SDK's generated types, where an
unknown field, a wrong type or a missing required field fails. The queries themselves
run against a real Prometheus in tests/integration/test_observability.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_deploy import ROOT, go_run

pytestmark = pytest.mark.e2e

DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))


def test_every_dashboard_panel_and_query_decodes_strictly() -> None:
    result = go_run("dashboard-check", *map(str, DASHBOARDS))
    assert result.returncode == 0, result.stdout + result.stderr
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        queries = sum(len(p.get("targets", [])) for p in board["panels"])
        assert f"{path}: ok ({len(board['panels'])} panels, {queries} queries)" in result.stdout


def _misspelt_panel_field(board: dict[str, Any]) -> None:
    board["panels"][1]["fieldConfg"] = board["panels"][1].pop("fieldConfig")


def _misspelt_query_field(board: dict[str, Any]) -> None:
    board["panels"][0]["targets"][0]["exprr"] = board["panels"][0]["targets"][0].pop("expr")


def _wrong_type(board: dict[str, Any]) -> None:
    board["panels"][0]["gridPos"]["w"] = "wide"


def _misspelt_dashboard_field(board: dict[str, Any]) -> None:
    board["refesh"] = board.pop("refresh")


@pytest.mark.parametrize(
    ("breakage", "says"),
    [
        (_misspelt_panel_field, "unexpected field 'fieldConfg'"),
        (_misspelt_query_field, "unexpected field 'exprr'"),
        (_wrong_type, "gridPos.w"),
        (_misspelt_dashboard_field, "unexpected field 'refesh'"),
    ],
)
def test_a_broken_dashboard_is_refused(tmp_path: Path, breakage: Any, says: str) -> None:
    board = json.loads(DASHBOARDS[0].read_text())
    breakage(board)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(board))
    result = go_run("dashboard-check", str(broken))
    assert result.returncode == 1 and says in result.stdout, result.stdout
