"""`lifecycle webhooks` refuses to start on a configuration that could not work or would
leak: no URL, plain http beyond loopback, credentials in the URL, a secret that is no
Standard Webhooks secret (and never echoes the secret)."""

from __future__ import annotations

import base64

import pytest

from service.settings import Settings
from service.webhooks.process import configuration_error

GOOD = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    ("url", "secret", "problem"),
    [
        ("", GOOD, "LIFECYCLE_WEBHOOK_URL is not set"),
        ("http://hooks.example.com/in", GOOD, "https unless it is loopback"),
        ("https://user:pw@hooks.example.com/in", GOOD, "credentials"),
        ("https://hooks.example.com/in", None, "LIFECYCLE_WEBHOOK_SECRET"),
        ("https://hooks.example.com/in", "plain-secret-value", "LIFECYCLE_WEBHOOK_SECRET"),
        ("https://hooks.example.com/in", "whsec_%%%not-base64%%%", "not valid base64"),
    ],
)
def test_a_configuration_that_cannot_work_is_named(url: str, secret: str | None, problem: str) -> None:
    found = configuration_error(Settings(webhook_url=url, webhook_secret=secret))
    assert found is not None and problem in found
    if secret:
        assert secret not in found


@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("https://hooks.example.com/in", False),
        ("http://127.0.0.1:9000/in", False),
        ("http://hooks.internal/in", True),
    ],
)
def test_https_loopback_or_explicitly_allowed_http_starts(url: str, allow_http: bool) -> None:
    assert (
        configuration_error(Settings(webhook_url=url, webhook_secret=GOOD, webhook_allow_http=allow_http))
        is None
    )
