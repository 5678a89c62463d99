"""Every alert links to a runbook: a section of docs/operations.md that says what to do, so
the on-call engineer paged by it lands on the steps, and renaming the section breaks a test."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.unit.test_doc_links import anchors

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
PAGE = "docs/operations.md"


def alerts() -> list[dict]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def test_there_are_alerts() -> None:
    assert len(alerts()) >= 5


def test_every_alert_has_a_runbook_section_in_operations() -> None:
    sections = anchors(ROOT / PAGE)
    for alert in alerts():
        url = alert["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == PAGE, f"{alert['alert']}: runbook_url {url!r} is not a section of {PAGE}"
        assert anchor in sections, f"{alert['alert']}: no heading #{anchor} in {PAGE}"


def test_no_alert_depends_on_a_scrape_job_name() -> None:
    """Under the Prometheus Operator the job is named after the Service or monitor, so an
    alert that filters on `job=` silently never fires there."""
    for alert in alerts():
        assert "job=" not in alert["expr"].replace(" ", ""), alert["alert"]
