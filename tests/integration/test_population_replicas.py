"""Population gauges with two API replicas behind one real Prometheus: one exports at a time.

The gauges describe the whole store, so `sum by (...)` over every target must equal the
store's numbers however many API processes are scraped, and when the exporting process
dies another one takes over within the lease time.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.dev.processes import free_port
from tests.processes import ServiceProcess, wait_for
from tests.stack import Stack, history

pytestmark = pytest.mark.integration

FAMILIES = ("lifecycle_users", "lifecycle_funnel_users", "lifecycle_active_users", "lifecycle_paying_users")
LEASE_S = 3


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Population samples of one API process's /metrics, by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in FAMILIES:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _exporter(port: int) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "lifecycle_population_exporter":
                return s.value
    return None


def _summed(prom_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every population family summed over the scraped targets, as a dashboard would."""
    out = {}
    for name in FAMILIES:
        body: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{prom_port}/api/v1/query",
            params={"query": f"sum without (instance, job) ({name})"},
            timeout=5,
        ).json()
        for r in body["data"]["result"]:
            out[(name, tuple(sorted(r["metric"].items())))] = float(r["value"][1])
    return out


def test_two_api_replicas_export_the_population_once(stack: Stack, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "install Debian's prometheus package (scripts/install-system-deps.sh)"
    worker = stack.worker()
    try:
        stack.publish(history(users=150))
        stack.wait_applied(worker)
    finally:
        worker.stop()  # the store stays put: the truth below does not move
    ports = [free_port(), free_port()]
    apis = [
        ServiceProcess(
            "api",
            {
                **stack.env,
                "LIFECYCLE_API_PORT": str(port),
                "LIFECYCLE_METRICS_LEASE": str(LEASE_S),
                "LIFECYCLE_METRICS_CACHE": "1",
            },
            tmp_path / f"api-{i}.log",
        ).start()
        for i, port in enumerate(ports)
    ]
    prom_port = free_port()
    targets = [f"127.0.0.1:{p}" for p in ports]
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "lifecycle-api", "static_configs": [{"targets": targets}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--query.lookback-delta=3s",
        ],
        stdout=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:

        def answering() -> bool:
            try:
                return all(httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=2).is_success for p in ports)
            except httpx.HTTPError:
                return False

        wait_for(answering, 60, "both API processes to answer", apis[0])
        scrapes = [_scrape(p) for p in ports]
        truth = scrapes[0] or scrapes[1]
        assert truth and any(v for v in truth.values())

        def prometheus_agrees() -> bool:
            try:
                return _summed(prom_port) == truth
            except (httpx.HTTPError, KeyError):
                return False

        try:
            wait_for(prometheus_agrees, 20, "sum over both targets to equal the store's numbers", apis[0])
        except AssertionError as exc:
            users = {k: v for k, v in _summed(prom_port).items() if k[0] == "lifecycle_users"}
            want = {k: v for k, v in truth.items() if k[0] == "lifecycle_users"}
            raise AssertionError(f"summed over targets {users}, the store {want}") from exc
        assert not (scrapes[0] and scrapes[1]), "both replicas export the population"
        holder = 0 if scrapes[0] else 1
        assert [_exporter(p) for p in ports] == [1.0 if i == holder else 0.0 for i in range(2)]
        time.sleep(3)  # several scrapes of both targets later it still holds
        assert _summed(prom_port) == truth
        apis[holder].kill()  # no goodbye: the lease has to run out
        died = time.monotonic()
        survivor = ports[1 - holder]
        wait_for(lambda: _scrape(survivor) == truth, LEASE_S + 5, "the other replica to take over")
        assert time.monotonic() - died <= LEASE_S + 2
        assert _exporter(survivor) == 1.0
        wait_for(prometheus_agrees, 30, "the sum after the failover to equal the store's numbers")
    finally:
        prom.terminate()
        prom.wait(20)
        for api in apis:
            api.stop()
