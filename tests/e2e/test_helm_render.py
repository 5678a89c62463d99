"""The Helm chart, rendered without a cluster and checked against the code.

`scripts/helm-check` renders deploy/helm/lifecycle with the Helm SDK's client-only install
(what `helm template` does, values.schema.json included) for the default values and the
two example value sets, and decodes every object strictly into the Kubernetes, Prometheus
Operator and KEDA Go types. The manifests it wrote are then checked here against the
code: settings, commands, probes, the profile mount, the API's key rule, the rules file,
and the autoscaler's cap at the partition count. Values the schema refuses fail to render.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.core.profile import parse_profile
from tests.e2e.test_deploy import ROOT, SETTINGS_ENV, api_settings, assert_cli_command, go_run, refusal

pytestmark = pytest.mark.e2e

CHART = ROOT / "deploy/helm/lifecycle"
EXAMPLES = sorted((ROOT / "deploy/helm/examples").glob("*.yaml"))
RULES = ROOT / "deploy/prometheus/rules/lifecycle.yml"
PORTS = {"api": 8000, "worker": 6066, "webhooks": 6068}
ROUTES = {"api": {"/healthz", "/readyz", "/metrics"}, "worker": {"/metrics"}, "webhooks": {"/metrics"}}


@cache
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each value set's objects: `default` and one per example file, rendered into a
    directory of this process's own: no other test process reads them half-written."""
    with tempfile.TemporaryDirectory(prefix="helm-") as out:
        result = go_run("helm-check", "-out", out, str(CHART), *map(str, EXAMPLES))
        assert result.returncode == 0, result.stdout + result.stderr
        return {
            name: [d for d in yaml.safe_load_all((Path(out) / f"{name}.yaml").read_text()) if d]
            for name in ["default", *(p.stem for p in EXAMPLES)]
        }


def values(name: str) -> dict[str, Any]:
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    if name != "default":
        for key, value in yaml.safe_load(
            (ROOT / "deploy/helm/examples" / f"{name}.yaml").read_text()
        ).items():
            base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_every_value_set_renders_and_decodes_strictly() -> None:
    sets = rendered()
    assert set(sets) == {"default", "operator-and-keda", "existing-profile"}
    kinds = {name: {d["kind"] for d in docs} for name, docs in sets.items()}
    assert kinds["default"] == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject"} <= kinds["operator-and-keda"]


@pytest.mark.parametrize("name", ["default", "operator-and-keda", "existing-profile"])
def test_the_rendered_objects_agree_with_the_code(name: str) -> None:
    docs = rendered()[name]
    chosen = values(name)
    config = one(docs, "ConfigMap", "lifecycle-config")["data"]
    assert set(config) <= SETTINGS_ENV
    assert config["LIFECYCLE_LOG_FORMAT"] == chosen["logFormat"]
    assert config["LIFECYCLE_PARTITIONS"] == str(chosen["partitions"])
    # the API listens on the pod's address: it starts only with the Secret's read key
    assert refusal(api_settings(config)) is not None
    assert refusal(api_settings({**config, "LIFECYCLE_API_KEY": "k" * 32})) is None
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    roles = {d["spec"]["template"]["spec"]["containers"][0]["args"][0] for d in deployments}
    assert roles == {"worker", "api"} | ({"webhooks"} if chosen["webhooks"]["enabled"] else set())
    for d in deployments:
        pod = d["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        role = container["args"][0]
        assert_cli_command(container["args"])
        assert container["image"] == f"{chosen['image']['repository']}:{chosen['image']['tag']}"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert [p["containerPort"] for p in container["ports"]] == [PORTS[role]]
        named = {p["name"] for p in container["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] in ROUTES[role] and check["port"] in named, (role, probe)
        refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container["envFrom"]}
        assert refs == {"lifecycle-config", chosen["existingSecret"]}
        assert pod["metadata"]["labels"].items() >= d["spec"]["selector"]["matchLabels"].items()
        pdb = one(docs, "PodDisruptionBudget", d["metadata"]["name"])
        assert pdb["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
        spread = pod["spec"].get("topologySpreadConstraints", [])
        assert bool(spread) == chosen["topologySpread"]["enabled"]
        for constraint in spread:
            assert constraint["labelSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", ["default", "operator-and-keda", "existing-profile"])
def test_the_profile_is_the_builtin_the_inline_or_the_existing_configmap(name: str) -> None:
    docs = rendered()[name]
    chosen = values(name)["profile"]
    config = one(docs, "ConfigMap", "lifecycle-config")["data"]
    if not (chosen["inline"] or chosen["existingConfigMap"]):
        assert config["LIFECYCLE_PROFILE"] == chosen["builtin"]
        return
    path = Path(config["LIFECYCLE_PROFILE"])
    source = chosen["existingConfigMap"] or "lifecycle-profile"
    if chosen["inline"] and not chosen["existingConfigMap"]:
        made = one(docs, "ConfigMap", "lifecycle-profile")["data"][path.name]
        parse_profile(yaml.safe_load(made), source="the chart's inline profile")
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        volume = next(v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == source)
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[volume] == str(path.parent)


def test_operator_objects_scrape_every_component_and_carry_the_projects_rules() -> None:
    docs = rendered()["operator-and-keda"]
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 3
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        selected = [
            s
            for s in services
            if s["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
        ]
        assert selected, monitor["metadata"]["name"]
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
    rule = one(docs, "PrometheusRule", "lifecycle-rules")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_keda_scales_the_workers_on_lag_and_never_past_the_partitions() -> None:
    docs = rendered()["operator-and-keda"]
    chosen = values("operator-and-keda")
    scaled = one(docs, "ScaledObject", "lifecycle-worker")
    assert chosen["autoscaling"]["maxReplicas"] > chosen["partitions"]
    assert scaled["spec"]["maxReplicaCount"] == chosen["partitions"]
    assert scaled["spec"]["minReplicaCount"] >= 1
    assert scaled["spec"]["scaleTargetRef"]["name"] == "lifecycle-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == chosen["appId"]
    assert trigger["metadata"]["topic"] == chosen["topics"]["events"]
    assert trigger["authenticationRef"]["name"] == "kafka-sasl"
    assert "replicas" not in one(docs, "Deployment", "lifecycle-worker")["spec"], (
        "KEDA owns the replica count"
    )


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("partitions: 0\n", "partitions"),
        ("worker:\n  replica: 3\n", "replica"),
        ("env:\n  REDIS_URL: x\n", "REDIS_URL"),
        ("autoscaling:\n  enabled: true\n  minReplicas: 0\n", "minReplicas"),
        ("autoscaling:\n  enabled: true\n  minReplicas: 5\n  maxReplicas: 2\n", "minReplicas"),
        ("profile:\n  builtin: mine\n", "builtin"),
    ],
)
def test_values_the_schema_refuses_do_not_render(tmp_path: Path, bad: str, says: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(bad)
    result = go_run("helm-check", str(CHART), str(file))
    assert result.returncode == 1, result.stdout
    assert "bad: does not render" in result.stdout and says in result.stdout, result.stdout
