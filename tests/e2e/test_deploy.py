"""The production path, checked with what runs here (no Docker engine on this machine).

- the compose file is loaded by compose-go (what `docker compose config` uses) and its
  lifecycle services are checked against the code: commands, environment variables,
  mounted files, health-gated start order, Prometheus targets;
- the Kubernetes manifests are rendered by `kubectl kustomize` and decoded strictly into
  the Kubernetes API's Go types (unknown fields and wrong types fail), then checked
  against the code: arguments, environment, probe paths and ports;
- the Dockerfile is checked for its stages, user, health check and entry command, and
  its install step (the lock as constraints) is resolved by pip;
- the image's health check command is run against a real API.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli.exposure import exposure
from service.cli.main import build_parser
from service.core.profile import parse_profile
from service.dev.processes import free_port
from service.settings import Settings
from tests.processes import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy/compose/docker-compose.yml"
K8S = ROOT / "deploy/k8s"
COMPOSE_ENV_EXAMPLE = "lifecycle.env.example"  # what an operator copies to lifecycle.env
K8S_KEY_FILE = "api-key.env"  # what an operator writes from api-key.env.example
LIFECYCLE_IMAGE = "lifecycle-ops"
SETTINGS_ENV = {f"LIFECYCLE_{name.upper()}" for name in Settings.model_fields}


def tool(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((f for f in fallbacks if Path(f).is_file()), None)
    assert found, f"{name} is needed to check the deployment files (see docs/testing.md)"
    return found


def go_run(
    program: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`go run` one of the checkers in scripts/ (each its own module, dependencies in go.sum)."""
    return subprocess.run(
        [tool("go", "/usr/local/go/bin/go"), "run", ".", *args],
        cwd=ROOT / "scripts" / program,
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_cli_command(args: list[str]) -> None:
    """The arguments parse as a `lifecycle` command (argparse exits on anything else)."""
    parsed = build_parser().parse_args(args)
    assert callable(parsed.func), args


def api_settings(env: dict[str, str]) -> Settings:
    """The settings `lifecycle api` would run with in that environment."""
    return Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in env.items() if k in SETTINGS_ENV})


def refusal(settings: Settings) -> str | None:
    return exposure(settings.api_host, settings.api_key is not None, settings.api_insecure)[0]


@cache
def compose_project() -> dict[str, Any]:
    """The project as compose loads it with the committed example as the API's env file."""
    result = go_run("compose-check", str(COMPOSE), env={"LIFECYCLE_ENV_FILE": COMPOSE_ENV_EXAMPLE})
    assert result.returncode == 0, result.stdout + result.stderr
    project: dict[str, Any] = json.loads(result.stdout)
    return project


def test_compose_file_is_valid_and_consistent_with_the_code() -> None:
    services = compose_project()["services"]
    assert {"kafka", "redis", "worker", "api", "generator", "prometheus", "grafana", "kafka-exporter"} <= set(
        services
    )
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                own = services[dep].get("healthcheck")
                from_image = services[dep]["image"].startswith(
                    LIFECYCLE_IMAGE
                )  # the Dockerfile's HEALTHCHECK
                assert (own and not own.get("disable")) or from_image, f"{dep} has no health check"
        for volume in svc.get("volumes") or []:
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (name, volume["source"])
        if image.startswith(LIFECYCLE_IMAGE):
            assert_cli_command(svc["command"])
            unknown = set(svc.get("environment") or {}) - SETTINGS_ENV
            assert not unknown, f"{name}: unknown settings {unknown}"
            if "build" in svc:
                assert (Path(svc["build"]["context"]) / "Dockerfile").is_file()
    assert "ports" not in services["worker"], "a fixed host port would stop `--scale worker=N`"
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"  # the broker version CI tests against
    # Prometheus: the targets are the compose services on the ports the service listens on
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["lifecycle-api"]["static_configs"][0]["targets"] == [
        f"api:{services['api']['environment']['LIFECYCLE_API_PORT']}"
    ]
    worker_sd = jobs["lifecycle-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert str(worker_sd["port"]) == services["worker"]["environment"]["LIFECYCLE_WORKER_PORT"]
    assert jobs["kafka-exporter"]["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    # Grafana: provisioning points where the dashboards are mounted
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/lifecycle.yml").read_text())
    mounts = {v["target"] for v in services["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounts
    assert any(v["target"] == "/etc/prometheus/rules" for v in services["prometheus"]["volumes"])


def test_compose_api_key_comes_from_an_env_file_git_ignores() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    (env_file,) = raw["api"]["env_file"]
    assert env_file == {"path": "${LIFECYCLE_ENV_FILE:-lifecycle.env}", "required": True}
    assert "LIFECYCLE_API_KEY" not in raw["api"]["environment"], "no key in the committed file"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/compose/lifecycle.env"], cwd=ROOT, timeout=30
    )
    assert ignored.returncode == 0, "lifecycle.env must be git-ignored"
    services = compose_project()["services"]
    api_env = services["api"]["environment"]
    assert "LIFECYCLE_API_KEY" in api_env, "the env file's key reaches the API container"
    assert "LIFECYCLE_API_KEY" not in services["worker"]["environment"]
    # the image listens on 0.0.0.0: the example as copied (no key yet) refuses to start,
    # and starts once the operator has set a key
    image_env = {"LIFECYCLE_API_HOST": "0.0.0.0", **{k: str(v) for k, v in api_env.items()}}
    assert refusal(api_settings(image_env)) is not None
    assert refusal(api_settings({**image_env, "LIFECYCLE_API_KEY": "set-by-the-operator"})) is None


def test_compose_check_rejects_what_compose_rejects(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        COMPOSE.read_text().replace("    restart: unless-stopped", "    restrt: unless-stopped", 1)
    )
    result = go_run("compose-check", str(bad))
    assert result.returncode != 0 and "restrt" in result.stdout + result.stderr


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )


@cache
def k8s_documents() -> list[dict[str, Any]]:
    """The manifests rendered as an operator renders them: from a copy holding the key
    file written from the committed example."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "k8s"
        shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns(K8S_KEY_FILE))
        example = (copy / f"{K8S_KEY_FILE}.example").read_text()
        (copy / K8S_KEY_FILE).write_text(
            example.replace("LIFECYCLE_API_KEY=", "LIFECYCLE_API_KEY=k8s-check-key")
        )
        rendered = kustomize(copy)
    assert rendered.returncode == 0, rendered.stderr
    strict = go_run("k8s-check", stdin=rendered.stdout)
    assert strict.returncode == 0, strict.stdout + strict.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def test_kubernetes_manifests_are_valid_and_consistent_with_the_code() -> None:
    docs = k8s_documents()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "lifecycle-worker"),
        ("Deployment", "lifecycle-api"),
        ("Service", "lifecycle-api"),
        ("PodDisruptionBudget", "lifecycle-worker"),
        ("PodDisruptionBudget", "lifecycle-api"),
        ("Deployment", "lifecycle-webhooks"),
        ("PodDisruptionBudget", "lifecycle-webhooks"),
        ("ConfigMap", "lifecycle-config"),
        ("Secret", "lifecycle-secret"),
    } <= kinds
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    secret = next(d for d in docs if d["metadata"]["name"] == "lifecycle-secret")["stringData"]
    assert set(config) | set(secret) <= SETTINGS_ENV
    Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in {**config, **secret}.items()})
    routes = {"api": {"/healthz", "/readyz", "/metrics"}, "worker": {"/metrics"}, "webhooks": {"/metrics"}}
    ports = {
        "api": int(config["LIFECYCLE_API_PORT"]),
        "worker": int(config["LIFECYCLE_WORKER_PORT"]),
        "webhooks": int(config["LIFECYCLE_WEBHOOK_METRICS_PORT"]),
    }
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        role = container["args"][0]
        assert_cli_command(container["args"])
        assert container["image"].startswith("registry.example.com/lifecycle-ops:")
        assert {"requests", "limits"} <= set(container["resources"])
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(named.values()) == [ports[role]]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports[role])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] in routes[role] and check["port"] in named, (role, probe)
        refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container["envFrom"]}
        assert refs == {"lifecycle-config", "lifecycle-secret"}
        selector = d["spec"]["selector"]["matchLabels"]
        pdb = next(
            x
            for x in docs
            if x["kind"] == "PodDisruptionBudget" and x["metadata"]["name"] == d["metadata"]["name"]
        )
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    # the profile is a file from a ConfigMap, mounted in every pod where LIFECYCLE_PROFILE says
    profile_path = Path(config["LIFECYCLE_PROFILE"])
    (profile_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("lifecycle-profile")
    ]
    parse_profile(yaml.safe_load(profile_map["data"][profile_path.name]), source="k8s profile")
    for d in docs:
        if d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            volume = next(
                v["name"]
                for v in pod["volumes"]
                if v.get("configMap", {}).get("name") == profile_map["metadata"]["name"]
            )
            (container,) = pod["containers"]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts[volume] == str(profile_path.parent), d["metadata"]["name"]
    assert int(config["LIFECYCLE_PARTITIONS"]) >= next(
        d["spec"]["replicas"]
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "lifecycle-worker"
    )


def test_kubernetes_api_key_comes_from_a_secret_never_committed(tmp_path: Path) -> None:
    docs = k8s_documents()
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lifecycle-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    (key,) = [e for e in container.get("env", []) if e["name"] == "LIFECYCLE_API_KEY"]
    ref = key["valueFrom"]["secretKeyRef"]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"])
    assert ref["name"].startswith("lifecycle-api-key")  # kustomize's content-hashed name
    value = base64.b64decode(secret["data"][ref["key"]]).decode()
    assert value == "k8s-check-key", "the key is the one in the operator's file"
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert refusal(api_settings({**config, "LIFECYCLE_API_KEY": value})) is None
    assert refusal(api_settings(config)) is not None, "without the Secret the API would not start"
    worker = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lifecycle-worker"
    )
    assert not any(
        e["name"] == "LIFECYCLE_API_KEY"
        for c in worker["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    )
    # the repository holds only the example: rendering without the operator's file fails
    # and names it, so no committed key can ever be deployed
    bare = tmp_path / "k8s"
    shutil.copytree(K8S, bare, ignore=shutil.ignore_patterns(K8S_KEY_FILE))
    missing = kustomize(bare)
    assert missing.returncode != 0 and K8S_KEY_FILE in missing.stderr, missing.stderr
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"deploy/k8s/{K8S_KEY_FILE}"], cwd=ROOT, timeout=30
    )
    assert ignored.returncode == 0, f"{K8S_KEY_FILE} must be git-ignored"
    assert "LIFECYCLE_API_KEY=\n" in (K8S / f"{K8S_KEY_FILE}.example").read_text()


def test_dockerfile_builds_a_slim_non_root_image_from_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line and not line.startswith("#")
    ]
    froms = [rest for op, rest in instructions if op == "FROM"]
    assert len(froms) >= 2 and all("slim" in f or "PYTHON_IMAGE" in f for f in froms)
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text)
    user = next(rest for op, rest in instructions if op == "USER")
    assert not user.startswith(("0", "root"))
    assert "-c requirements.lock" in text
    health = json.loads(next(rest for op, rest in instructions if op == "HEALTHCHECK").split("CMD", 1)[1])
    assert health[0] == "lifecycle"
    assert_cli_command(health[1:])
    assert json.loads(next(rest for op, rest in instructions if op == "ENTRYPOINT")) == ["lifecycle"]
    assert_cli_command(json.loads(next(rest for op, rest in instructions if op == "CMD")))
    for op, rest in instructions:
        if op == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    # the image's install step resolves: runtime dependencies within the lock's pins
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "-c", "requirements.lock", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_health_check_follows_the_api(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "LIFECYCLE_REDIS_URL": redis_url,
        "LIFECYCLE_API_PORT": str(port),
        "LIFECYCLE_WORKER_PORT": str(free_port()),
    }
    check = [sys.executable, "-m", "service.cli", "healthcheck"]
    run_env = {**os.environ, **env}
    assert subprocess.run(check, env=run_env, capture_output=True, timeout=30).returncode == 1
    api = ServiceProcess("api", env, tmp_path / "api.log").start()
    try:
        wait_for(
            lambda: subprocess.run(check, env=run_env, capture_output=True, timeout=30).returncode == 0,
            60,
            "lifecycle healthcheck to pass",
            api,
        )
    finally:
        api.stop()
