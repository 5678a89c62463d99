"""The `lifecycle` commands as a user runs them from the docs: dev, replay, bad config."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.core.durations import DAY_MS

pytestmark = pytest.mark.e2e

LIFECYCLE = [sys.executable, "-m", "service.cli"]


def _read_until(
    proc: subprocess.Popen[bytes], out: Path, pattern: str, timeout: float
) -> tuple[re.Match[str], str]:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = out.read_text(errors="replace")
        match = re.search(pattern, seen)
        if match:
            return match, seen
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"no {pattern!r} in the output of lifecycle dev:\n{seen}")


headers: dict[str, str] = {}  # the demo's API key, once `lifecycle dev` printed it


def _poll(url: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5, headers=headers)
            if check(last):
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url}: last answer {last!r}")


def test_dev_runs_the_whole_service_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "LIFECYCLE_API_PORT": "0", "LIFECYCLE_WORKER_PORT": "0", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "dev.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [*LIFECYCLE, "dev", "--users", "400", "--days", "60", "--rate", "30", "--workdir", str(tmp_path)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        match, output = _read_until(proc, out, r"API\s+(http://127\.0\.0\.1:\d+)", 180)
        api = match.group(1)
        key = re.search(r"API key\s+(\S+)", output)
        assert key, output
        headers["Authorization"] = f"Bearer {key.group(1)}"
        assert httpx.get(f"{api}/lifecycle").status_code == 401  # no key, no answer
        console = re.search(r"Console\s+(http://127\.0\.0\.1:\d+/console)", output)
        assert console and console.group(1).startswith(api), output
        page = httpx.get(console.group(1))  # the page itself needs no key: it asks for one
        assert page.status_code == 200 and "<title>Lifecycle console</title>" in page.text
        worker = re.search(r"worker\s+(http://127\.0\.0\.1:\d+)/metrics", output)
        assert worker, output
        body = _poll(
            f"{api}/lifecycle", lambda r: r.status_code == 200 and r.json()["total"] > 300, 120
        ).json()
        assert sum(body["counts"].values()) == body["total"]
        assert body["counts"]["churned"] + body["counts"]["dead"] + body["counts"]["silent"] > 0
        funnel = httpx.get(f"{api}/funnel", headers=headers).json()["stages"]
        users = [s["users"] for s in funnel]
        assert users == sorted(users, reverse=True) and users[0] > 0
        assert _poll(f"{api}/readyz", lambda r: r.status_code == 200, 30).json()["status"] == "ready"
        assert httpx.get(f"{api}/docs", headers=headers).status_code == 200
        metrics = _poll(f"{worker.group(1)}/metrics", lambda r: "lifecycle_events_total" in r.text, 30).text
        assert re.search(r'lifecycle_events_total\{outcome="applied"\} [1-9]', metrics)
        # Prometheus (Debian's, installed by the set-up) scrapes both and evaluates the project's rules
        prom = re.search(r"Prometheus\s+(http://127\.0\.0\.1:\d+)", output)
        assert prom, output
        query = f"{prom.group(1)}/api/v1/query"
        for expr in (
            "sum(lifecycle_users)",
            "sum(rate(lifecycle_events_total[1m]))",
            ":lifecycle_payment:ratio",
        ):
            _poll(f"{query}?query={expr}", lambda r: r.json()["data"]["result"], 90)
        # triggers go out signed through lifecycle webhooks to the demo messaging tool, whose
        # delivery reports come back through /v1/outcomes: the reminder funnel fills
        assert re.search(r"webhooks\s+http://127\.0\.0\.1:\d+/metrics", output), output

        def reported(r: httpx.Response) -> bool:
            recall = {t["type"]: t for t in r.json()["triggers"]}.get("recall")
            return bool(
                recall and recall["outcomes"]["message_delivered"] and recall["outcomes"]["message_click"]
            )

        _poll(f"{api}/triggers/summary", reported, 120)
        # live events keep arriving: the total number of events applied grows
        first = httpx.get(f"{api}/lifecycle", headers=headers).json()["total"]
        _poll(f"{api}/lifecycle", lambda r: r.json()["total"] > first, 60)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"processes left running: {leftovers}"


def test_invalid_profile_fails_at_startup_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "lifecycle: {new_window: 1d, silent_after: 10d, churn_after: 5d, dead_after: 30d}\n"
        "funnel: [{name: visit, event: visit}]\n"
    )
    for command in ("worker", "api"):
        result = subprocess.run(
            [*LIFECYCLE, command],
            env={**os.environ, "LIFECYCLE_PROFILE": str(bad)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "lifecycle.churn_after" in result.stderr, result.stderr


def test_replay_publishes_a_file_and_reports_bad_lines(broker: Any, tmp_path: Path) -> None:
    from kafka import KafkaConsumer

    topic = f"replay-{tmp_path.name}"[:100]
    events = [
        {
            "event_id": f"r{i}",
            "user_id": f"user-{i % 50}",
            "type": "visit",
            "ts": 1_700_000_000_000 + i * DAY_MS,
        }
        for i in range(300)
    ]
    jsonl = tmp_path / "history.jsonl"
    future = {"event_id": "f", "user_id": "u", "type": "visit", "ts": "2090-01-01T00:00:00Z"}
    jsonl.write_bytes(
        b"\n".join(orjson.dumps(e) for e in events)
        + b'\nnot json\n{"event_id": 1}\n'
        + orjson.dumps(future)
        + b"\n"
    )
    csv = tmp_path / "history.csv"
    csv.write_text(
        "event_id,user_id,type,ts,channel,amount\n"
        "c1,user-1,order,1700000000000,ads,12.5\n"
        "c2,user-2,visit,2023-11-14T22:13:20Z,,\n"
    )
    env = {**os.environ, "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap, "LIFECYCLE_EVENTS_TOPIC": topic}
    env["LIFECYCLE_DLQ_TOPIC"] = f"{topic}.dlq"
    result = subprocess.run(
        [*LIFECYCLE, "replay", str(jsonl)], env=env, capture_output=True, text=True, timeout=120
    )
    assert "replayed 300 events" in result.stdout, result.stdout + result.stderr
    assert "3 invalid line(s)" in result.stdout
    assert "line 301" in result.stderr and "line 302" in result.stderr
    assert "line 303" in result.stderr and "LIFECYCLE_MAX_FUTURE" in result.stderr
    assert result.returncode == 1
    result = subprocess.run(
        [*LIFECYCLE, "replay", str(csv)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 2 events" in result.stdout

    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    values = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    got = [e for v in values for e in (v if isinstance(v, list) else [v])]
    assert sorted(e["event_id"] for e in got) == sorted([*(e["event_id"] for e in events), "c1", "c2"])
    c1 = next(e for e in got if e["event_id"] == "c1")
    assert c1["amount"] == 12.5 and c1["channel"] == "ads"
