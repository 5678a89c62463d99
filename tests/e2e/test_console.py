"""The web console as an operator uses it: built from `console/`, served by `lifecycle api`,
read in headless Chromium against the running service fed by the generator.

The browser part is `console/tests/browser.mjs` (playwright-core driving Debian's
`/usr/bin/chromium`; never a downloaded browser). It needs `console/`'s npm packages (the
Makefile's `console-deps`) and `scripts/install-system-deps.sh` (Chromium). Screenshots go
to `$LIFECYCLE_CONSOLE_SCREENSHOTS` when set (`make screenshots` sets `docs/`), else to
the test's temporary directory.
"""

from __future__ import annotations

import filecmp
import os
import secrets
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from service.core.durations import DAY_MS
from service.core.history import day_of
from service.core.partitioning import partition_for
from service.dev.generator import generate
from service.dev.processes import free_port
from service.kafka.publisher import EventPublisher
from service.storage.keys import all_partitions
from tests.processes import ServiceProcess, sync_redis, wait_for
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
STATIC = ROOT / "service" / "api" / "console_static"
CHROMIUM = "/usr/bin/chromium"


def _need(path: Path, hint: str) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: {hint}")


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files, *cmp.funny_files]
    for name in cmp.common_dirs:
        out += [f"{name}/{d}" for d in _differences(a / name, b / name)]
    return out


def test_the_committed_build_is_the_build_of_the_sources(tmp_path: Path) -> None:
    """`service/api/console_static/` (shipped in the Python package) is what `npm run build` makes now."""
    _need(CONSOLE / "node_modules", "run `make console-deps` (console/'s npm packages)")
    out = tmp_path / "build"
    result = subprocess.run(
        ["npx", "--no-install", "tsc", "--noEmit"], cwd=CONSOLE, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        ["npx", "--no-install", "vite", "build", "--outDir", str(out), "--emptyOutDir"],
        cwd=CONSOLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _differences(out, STATIC), (
        f"service/api/console_static differs from a fresh build ({_differences(out, STATIC)}): "
        "run `npm run build` in console/ and commit the result"
    )


def _dead_letters(stack: Stack) -> None:
    """Three messages no event can be read from: the console's DLQ tile counts them."""
    s = stack.settings
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, stack.partitions, single=True)
    try:
        for i, value in enumerate((b"not json", b'{"event_id": "only"}', b"42")):
            pub.publish_raw(value, key=f"bad-{i}".encode(), partition=partition_for("bad", stack.partitions))
        pub.flush()
        for p, offset in pub.acked_offsets.items():
            stack.published[p] = max(stack.published.get(p, -1), offset)
    finally:
        pub.close()


def _replay_day_by_day(
    stack: Stack, worker: ServiceProcess, base: str, key: str, days: int, shown: int
) -> None:
    """The generator's history up to now, replayed in event-clock mode: all but the last
    `shown` days at once, then a day at a time, each waited for until the running API has
    recorded that day's snapshot. So the history chart shows real end-of-day populations,
    recorded as they happened in event time (the way a backfill in event mode records them)."""
    s = stack.settings
    end = int(time.time() * 1000)
    events = list(
        generate(users=400, start_ms=end - days * DAY_MS, days=days, seed=11, profile=s.loaded_profile)
    )
    cuts = [end - n * DAY_MS for n in range(shown - 1, -1, -1)] + [end + DAY_MS]
    low = -1
    for cut in cuts:
        chunk = [e for e in events if low <= e["ts"] < cut]
        low = cut
        if not chunk:
            continue
        stack.publish(chunk)
        stack.wait_applied(worker)
        day = day_of(max(e["ts"] for e in chunk), s.loaded_profile.calendar)
        wait_for(lambda day=day: _recorded(base, key, day), 30, f"the snapshot of {day}", worker)


def _recorded(base: str, key: str, day: str) -> bool:
    try:
        body = httpx.get(f"{base}/lifecycle/history?days=90", headers={"X-API-Key": key}, timeout=5).json()
    except httpx.HTTPError:
        return False
    return bool(body["days"]) and body["days"][-1]["day"] == day


OUTCOMES = ("message_delivered", "message_click", "payment_click", "paid")


def _answer_triggers(stack: Stack, worker: ServiceProcess) -> int:
    """What a messaging system sends back for the triggers fired so far: of every ten treated
    triggers, 8 delivered, 4 clicked, 2 payment clicks, 1 paid, minutes after the trigger
    fired. (The generator's own outcome
    events name trigger ids of its own, which the service rightly attributes to nothing.)"""
    s = stack.settings
    client = sync_redis(s.redis_url)
    try:
        outboxes = [k.outbox for k in all_partitions(s.key_prefix, stack.partitions)]
        wait_for(lambda: not sum(client.xlen(k) for k in outboxes), 60, "the trigger outbox relayed", worker)
    finally:
        client.close()
    consumer = KafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        tps = [TopicPartition(s.triggers_topic, p) for p in range(stack.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        fired = [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    treated = [ce for ce in fired if not ce["data"]["holdout"]]
    answers = [
        {
            "event_id": f"answer-{ce['id']}-{kind}",
            "user_id": ce["subject"],
            "type": kind,
            "ts": _ms(ce["time"]) + (step + 1) * 60_000,  # minutes after the trigger fired
            "properties": {"trigger_id": ce["id"]},
        }
        for i, ce in enumerate(treated)
        for step, (kind, share) in enumerate(zip(OUTCOMES, (8, 4, 2, 1), strict=True))
        if i % 10 < share
    ]
    stack.publish(answers)
    return len(treated)


def test_console_in_chromium_shows_the_apis_numbers_live_and_exports_an_audience(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    _need(CONSOLE / "node_modules" / "playwright-core", "run `make console-deps` (console/'s npm packages)")
    _need(Path(CHROMIUM), "run scripts/install-system-deps.sh (Debian's chromium)")
    key = secrets.token_urlsafe(16)
    port = free_port()
    stack = make_stack(
        broker,
        redis_url,
        tmp_path,
        LIFECYCLE_CLOCK="event",
        LIFECYCLE_API_KEY=key,
        LIFECYCLE_API_PORT=str(port),
        LIFECYCLE_HISTORY_INTERVAL="0.5",
    )
    base = f"http://127.0.0.1:{port}"
    _dead_letters(stack)
    worker = stack.worker()
    api = ServiceProcess("api", stack.env, tmp_path / "api.log").start()
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), 60, "the API", api)
        _replay_day_by_day(stack, worker, base, key, days=45, shown=14)
        assert _answer_triggers(stack, worker) > 10
        stack.wait_applied(worker)
        summary = httpx.get(f"{base}/triggers/summary", headers={"X-API-Key": key}).json()["triggers"]
        assert min(sum(t["outcomes"][o] for t in summary) for o in OUTCOMES) > 0, (
            summary
        )  # numbers to compare
        shots = Path(os.environ.get("LIFECYCLE_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots").resolve()
        env = {
            **os.environ,
            "CONSOLE_URL": base,
            "API_KEY": key,
            "SCREENSHOT_DIR": str(shots),
            "CHROMIUM": CHROMIUM,
        }
        node = shutil.which("node") or "node"
        result = subprocess.run(
            [node, "tests/browser.mjs"], cwd=CONSOLE, env=env, capture_output=True, text=True, timeout=240
        )
        print(result.stdout)
        assert result.returncode == 0, (
            f"{result.stdout}\n{result.stderr}\n--- api log ---\n{api.log_tail()}"
            f"\n--- worker log ---\n{worker.log_tail()}"
        )
        assert "all checks passed" in result.stdout
        for name in ("console-overview.png", "console-funnel-channel.png", "console-export.png"):
            assert (shots / name).stat().st_size > 10_000, name
        assert api.alive() and worker.alive()
    finally:
        api.stop()
        worker.stop()


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
