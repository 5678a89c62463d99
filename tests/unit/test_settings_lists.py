"""List settings from the environment take the two forms the docs give: a JSON list, or
comma-separated values."""

from __future__ import annotations

import pytest

from service.settings import Settings


@pytest.mark.parametrize("raw", ['["wk1", "wk2"]', "wk1,wk2", " wk1 , wk2 ,"])
def test_write_keys_and_cors_origins_from_the_environment(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_WRITE_KEYS", raw)
    monkeypatch.setenv("LIFECYCLE_CORS_ORIGINS", raw.replace("wk", "https://shop"))
    s = Settings()
    assert [k.get_secret_value() for k in s.write_keys] == ["wk1", "wk2"]
    assert s.cors_origins == ["https://shop1", "https://shop2"]
    assert "wk1" not in repr(s)  # secrets never reach a log
