"""`lifecycle api` as an operator starts it: never open to the network by accident.

On a loopback address the API may run without a key (only this machine reaches it). On
any other address it needs `LIFECYCLE_API_KEY`, or `LIFECYCLE_API_INSECURE=true` said on
purpose (then it warns); otherwise the command refuses to start, in one line naming both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.dev.processes import free_port
from tests.processes import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

ACCESS = ("LIFECYCLE_API_KEY", "LIFECYCLE_API_INSECURE", "LIFECYCLE_API_HOST", "LIFECYCLE_API_PORT")


def _env(redis_url: str, host: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ACCESS}
    env.update(
        {
            "LIFECYCLE_REDIS_URL": redis_url,
            "LIFECYCLE_API_HOST": host,
            "LIFECYCLE_API_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", "api"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`lifecycle api` on {env['LIFECYCLE_API_HOST']} served instead of refusing"
        ) from exc


def _serve(env: dict[str, str], log: Path) -> ServiceProcess:
    api = ServiceProcess("api", {}, log)
    api.env = env
    return api.start()


def _healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("key", [None, ""], ids=["no-key", "empty-key"])
def test_refuses_a_public_address_without_a_key(redis_url: str, key: str | None) -> None:
    extra = {} if key is None else {"LIFECYCLE_API_KEY": key}
    result = _refused(_env(redis_url, "0.0.0.0", **extra))
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "LIFECYCLE_API_KEY" in message and "LIFECYCLE_API_INSECURE" in message, message
    assert "0.0.0.0" in message, message


def test_refuses_the_ipv6_any_address_too(redis_url: str) -> None:
    result = _refused(_env(redis_url, "::"))
    assert result.returncode != 0 and "LIFECYCLE_API_KEY" in result.stderr, result.stderr


def test_serves_a_public_address_with_a_key(redis_url: str, tmp_path: Path) -> None:
    env = _env(redis_url, "0.0.0.0", LIFECYCLE_API_KEY="a-long-enough-test-key")
    port = env["LIFECYCLE_API_PORT"]
    api = _serve(env, tmp_path / "api.log")
    try:
        wait_for(lambda: _healthy(port), 60, "the API to answer /healthz", api)
        assert httpx.get(f"http://127.0.0.1:{port}/lifecycle", timeout=5).status_code == 401
        keyed = {"Authorization": "Bearer a-long-enough-test-key"}
        assert httpx.get(f"http://127.0.0.1:{port}/lifecycle", headers=keyed, timeout=5).status_code == 200
    finally:
        api.stop()
    assert "LIFECYCLE_API_INSECURE" not in api.log_tail()


def test_serves_a_public_address_open_when_insecure_is_said_on_purpose(
    redis_url: str, tmp_path: Path
) -> None:
    env = _env(redis_url, "0.0.0.0", LIFECYCLE_API_INSECURE="true")
    port = env["LIFECYCLE_API_PORT"]
    api = _serve(env, tmp_path / "api.log")
    try:
        wait_for(lambda: _healthy(port), 60, "the API to answer /healthz", api)
        assert httpx.get(f"http://127.0.0.1:{port}/lifecycle", timeout=5).status_code == 200
    finally:
        api.stop()
    warning = api.log_tail()
    assert "warning" in warning.lower() and "LIFECYCLE_API_INSECURE" in warning, warning


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_serves_loopback_without_a_key(redis_url: str, tmp_path: Path, host: str) -> None:
    env = _env(redis_url, host)
    port = env["LIFECYCLE_API_PORT"]
    api = _serve(env, tmp_path / "api.log")
    try:
        wait_for(lambda: _healthy(port), 60, "the API to answer /healthz", api)
        assert httpx.get(f"http://127.0.0.1:{port}/lifecycle", timeout=5).status_code == 200
    finally:
        api.stop()
    log = api.log_tail()
    assert "without a key" not in log and "has no key" not in log, log
