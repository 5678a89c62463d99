"""The chart deploys the image of this package version and carries the project's rules.

`image.tag`, `appVersion` and the chart's own version follow pyproject.toml, so a release
bumps them together; the chart's copy of the Prometheus rules (Helm reads files only from
inside the chart) is the same as deploy/prometheus/rules/lifecycle.yml.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "lifecycle"


def test_image_tag_follows_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == version
    assert chart["appVersion"] == version
    assert chart["version"] == version


def test_the_charts_rules_are_the_projects_rules() -> None:
    rules = ROOT / "deploy" / "prometheus" / "rules" / "lifecycle.yml"
    assert (CHART / "files" / "lifecycle-rules.yml").read_text() == rules.read_text(), (
        "copy deploy/prometheus/rules/lifecycle.yml to deploy/helm/lifecycle/files/lifecycle-rules.yml"
    )
