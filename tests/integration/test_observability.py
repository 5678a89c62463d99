"""Metrics, rules and dashboards checked against a real Prometheus scraping the running service."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.dev.processes import free_port
from tests.processes import ServiceProcess, wait_for
from tests.stack import Stack, history

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/lifecycle.yml"
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
# panels follow the `datasource` variable; the compose stack's provisioned Prometheus is the
# default datasource, which the variable resolves to there
DATASOURCE_UID = "${datasource}"
PROVISIONED = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [t["expr"].replace("$channel", ".*") for t in panel["targets"]]
    return exprs


def rule_exprs() -> list[str]:
    """Recording rules as they are; alerts without their threshold (a quiet alert has no data)."""
    exprs = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(str(rule["expr"]).split())
            exprs.append(re.split(r"\s(?:>|<|==|>=|<=|!=)\s[\d.e+-]+$", expr)[0] if "alert" in rule else expr)
    return exprs


def test_dashboards_are_well_formed_and_generated_from_code() -> None:
    assert {p.stem for p in DASHBOARDS} == {
        "lifecycle-business",
        "lifecycle-operations",
        "lifecycle-triggers",
    }
    assert PROVISIONED["datasources"][0]["isDefault"] is True
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "channel"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["title"] and panel["datasource"]["uid"] == DATASOURCE_UID
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"]["uid"] == DATASOURCE_UID
    spec = importlib.util.spec_from_file_location("dashboards", ROOT / "deploy/grafana/dashboards.py")
    assert spec and spec.loader
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    for board in (code.business(), code.operations(), code.triggers()):
        committed = json.loads((ROOT / f"deploy/grafana/dashboards/{board['uid']}.json").read_text())
        assert committed == board, "run `python deploy/grafana/dashboards.py` and commit the JSON"


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/install-system-deps.sh)"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_and_rule_query_returns_data(stack: Stack, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "install Debian's prometheus package (scripts/install-system-deps.sh)"
    api_port, worker_port, prom_port = free_port(), free_port(), free_port()
    env = {**stack.env, "LIFECYCLE_API_PORT": str(api_port), "LIFECYCLE_WORKER_PORT": str(worker_port)}
    worker = ServiceProcess("worker", env, tmp_path / "worker.log").start()
    api = ServiceProcess("api", env, tmp_path / "api.log").start()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "lifecycle-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
            {"job_name": "lifecycle-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        events = history(users=400)
        stack.publish(events[: len(events) // 2])
        stack.wait_applied(worker)
        time.sleep(3)  # scrapes before and after: rates need two samples
        stack.publish(events[len(events) // 2 :])
        stack.wait_applied(worker)
        base = f"http://127.0.0.1:{prom_port}/api/v1/query"
        pending = set(dashboard_exprs() + rule_exprs())
        assert len(pending) > 30

        def all_answer() -> bool:
            for expr in list(pending):
                try:
                    body: dict[str, Any] = httpx.get(base, params={"query": expr}, timeout=5).json()
                except httpx.HTTPError:
                    return False
                assert body["status"] == "success", (expr, body)
                if body["data"]["result"]:
                    pending.discard(expr)
            return not pending

        try:
            wait_for(all_answer, 90, "every query to return data", api)
        except AssertionError as exc:
            raise AssertionError(f"queries without data: {sorted(pending)}") from exc
    finally:
        prom.terminate()
        prom.wait(20)
        api.stop()
        worker.stop()


def test_worker_down_fires_whatever_the_scrape_job_is_called(tmp_path: Path) -> None:
    """promtool's rule unit test: a worker scraped under an operator-made job name goes down
    and the alert fires; an API target (no worker metrics) going down does not fire it."""
    promtool = shutil.which("promtool")
    assert promtool
    worker = 'job="monitoring/lifecycle-worker-0", instance="10.0.0.7:6066"'
    api = 'job="lifecycle-api", instance="10.0.0.8:8000"'
    lag = "lifecycle_consumer_lag_messages"
    moved = "Its partitions move to the other workers after the session timeout."
    case = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{worker}}}", "values": "1 1 1 0x10"},
                    {"series": f'{lag}{{{worker}, partition="0"}}', "values": "5 5 5"},
                    {"series": f"up{{{api}}}", "values": "1 1 1 0x10"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "8m",
                        "alertname": "LifecycleWorkerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "monitoring/lifecycle-worker-0",
                                    "instance": "10.0.0.7:6066",
                                },
                                "exp_annotations": {
                                    "summary": "A lifecycle worker is not scraped",
                                    "description": moved,
                                    "runbook_url": "docs/operations.md#worker-down",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "worker_down_test.yml"
    test_file.write_text(json.dumps(case))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
