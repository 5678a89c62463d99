"""The web console as an operator uses it: built from `console/`, served by `lifecycle api`,
read in headless Chromium against the running service fed by the generator.

The browser part is `console/tests/browser.mjs` (playwright-core driving Debian's
`/usr/bin/chromium`; never a downloaded browser). It needs `npm ci` in `console/` (the
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
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.partitioning import partition_for
from service.embedded import free_port
from service.generator import generate
from service.publisher import EventPublisher
from tests.processes import ServiceProcess, wait_for
from tests.stack import Stack, make_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
STATIC = ROOT / "service" / "console_static"
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
    """`service/console_static/` (shipped in the Python package) is what `npm run build` makes now."""
    _need(CONSOLE / "node_modules", "run `make console-deps` (npm ci in console/)")
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
        f"service/console_static differs from a fresh build ({_differences(out, STATIC)}): "
        "run `npm run build` in console/ and commit the result"
    )


def _publish_history(stack: Stack, users: int, days: int) -> None:
    """The generator's history ending now (wall clock), and three messages for the dead-letter topic."""
    s = stack.settings
    start = int((time.time() - days * 86_400) * 1000)
    stack.publish(list(generate(users=users, start_ms=start, days=days, seed=11, profile=s.loaded_profile)))
    pub = EventPublisher(s.kafka_bootstrap, s.events_topic, stack.partitions, single=True)
    try:
        for i, value in enumerate((b"not json", b'{"event_id": "only"}', b"42")):
            pub.publish_raw(value, key=f"bad-{i}".encode(), partition=partition_for("bad", stack.partitions))
        pub.flush()
        for p, offset in pub.acked_offsets.items():
            stack.published[p] = max(stack.published.get(p, -1), offset)
    finally:
        pub.close()


def test_console_in_chromium_shows_the_apis_numbers_live_and_exports_an_audience(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    _need(CONSOLE / "node_modules" / "playwright-core", "run `make console-deps` (npm ci in console/)")
    _need(Path(CHROMIUM), "run scripts/install-system-deps.sh (Debian's chromium)")
    key = secrets.token_urlsafe(16)
    port = free_port()
    stack = make_stack(
        broker,
        redis_url,
        tmp_path,
        LIFECYCLE_CLOCK="wall",
        LIFECYCLE_API_KEY=key,
        LIFECYCLE_API_PORT=str(port),
        LIFECYCLE_HISTORY_INTERVAL="1",
    )
    _publish_history(stack, users=400, days=45)
    worker = stack.worker()
    api = ServiceProcess("api", stack.env, tmp_path / "api.log").start()
    try:
        stack.wait_applied(worker)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/healthz"), 60, "the API", api)
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


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
