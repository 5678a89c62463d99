"""Which listen addresses count as this machine only, and what serving on them requires."""

from __future__ import annotations

import pytest

from service.cli.exposure import exposure, is_loopback
from service.settings import Settings


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", " localhost "]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    assert exposure(host, has_key=False, insecure=False) == (None, None)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "api.example.com", "", "localhost.example.com"]
)
def test_other_addresses_need_a_key_or_insecure_on_purpose(host: str) -> None:
    assert not is_loopback(host)
    refusal, warning = exposure(host, has_key=False, insecure=False)
    assert refusal and warning is None
    assert "LIFECYCLE_API_KEY" in refusal and "LIFECYCLE_API_INSECURE" in refusal and "\n" not in refusal
    assert exposure(host, has_key=True, insecure=False) == (None, None)
    refusal, warning = exposure(host, has_key=False, insecure=True)
    assert refusal is None and warning and "LIFECYCLE_API_INSECURE" in warning


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_key_is_no_key(blank: str) -> None:
    assert Settings(api_key=blank).api_key is None
    key = Settings(api_key="k3y").api_key
    assert key is not None and key.get_secret_value() == "k3y"
