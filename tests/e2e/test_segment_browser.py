"""Segment's browser SDK, unmodified, in Debian's Chromium: `@segment/analytics-next` (npm)
with its settings inline (nothing from a CDN) posts identify, page and track calls to
`lifecycle api`'s tracking API (its short paths, a text/plain body, the write key in the
body, CORS for the page's origin), and a real worker lands the user they describe."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.dev.processes import free_port
from tests.processes import ServiceProcess, wait_for
from tests.stack import make_stack

pytestmark = pytest.mark.e2e

CONSOLE = Path(__file__).resolve().parents[2] / "console"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WRITE_KEY = "wk-browser-0123"
API_KEY = "read-key-browser"
USER = "browser-user-1"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_segment_browser_sdk_lands_a_user(broker: Any, redis_url: str, tmp_path: Path) -> None:
    api_port, page_port = free_port(), free_port()
    stack = make_stack(
        broker,
        redis_url,
        tmp_path,
        LIFECYCLE_API_PORT=str(api_port),
        LIFECYCLE_API_KEY=API_KEY,
        LIFECYCLE_WRITE_KEYS=f'["{WRITE_KEY}"]',
        LIFECYCLE_CORS_ORIGINS=f'["http://127.0.0.1:{page_port}"]',
    )
    base = f"http://127.0.0.1:{api_port}"
    worker = stack.worker()
    api = ServiceProcess("api", stack.env, tmp_path / "api.log").start()
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), 60, "the API", api)
        env = {
            **os.environ,
            "API_URL": base,
            "WRITE_KEY": WRITE_KEY,
            "PAGE_PORT": str(page_port),
            "USER_ID": USER,
            "CHROMIUM": CHROMIUM,
        }
        node = shutil.which("node") or "node"
        result = subprocess.run(
            [node, "tests/segment.mjs"], cwd=CONSOLE, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n--- api log ---\n{api.log_tail()}"
        report = orjson.loads(result.stdout.strip().splitlines()[-1])
        assert {c["path"] for c in report["calls"]} >= {"/v1/i", "/v1/p", "/v1/t"}, report
        assert all(orjson.loads(c["body"])["rejected"] == [] for c in report["calls"]), report
        assert report["outside"] == []  # nothing fetched from a CDN or elsewhere

        def landed() -> dict[str, Any] | None:
            r = httpx.get(f"{base}/users/{USER}", headers={"X-API-Key": API_KEY})
            body: dict[str, Any] = r.json()
            return body if r.status_code == 200 and body.get("orders") == 1 else None

        user = wait_for(landed, 60, "the browser's user", worker)
        assert user["revenue"] == 42.5
        anonymous = report["anonymousId"]
        assert anonymous and anonymous != USER

        def merged() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(f"{base}/users/{USER}", headers={"X-API-Key": API_KEY}).json()
            return body if body["event_counts"].get("visit") == 2 else None

        # the anonymous page view and the identified one: the identify merged the two ids
        user = wait_for(merged, 60, "the anonymous page view merged in", worker)
        asked = httpx.get(f"{base}/users/{anonymous}", headers={"X-API-Key": API_KEY}).json()
        assert asked["user_id"] == USER and asked["merged_from"] == anonymous
        assert httpx.get(f"{base}/lifecycle", headers={"X-API-Key": API_KEY}).json()["total"] == 1
        assert user["event_counts"].get("order") == 1  # "Order Completed" through the event map
        # the profile's named traits of the last identify (the first one came before the
        # user's own first activity); email is not named, so it is not kept
        wait_for(
            lambda: (
                httpx.get(f"{base}/users/{USER}", headers={"X-API-Key": API_KEY}).json()["traits"]
                == {"plan": "pro", "country": "DE"}
            ),
            30,
            "the traits",
            worker,
        )
    finally:
        api.stop()
        worker.stop()
