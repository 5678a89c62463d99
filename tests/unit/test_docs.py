"""docs/configuration.md is what the generator writes from `Settings`, never a stale copy."""

from __future__ import annotations

from scripts.config_doc import TARGET, render


def test_configuration_page_is_generated_from_the_settings() -> None:
    assert TARGET.read_text() == render(), "docs/configuration.md is stale: run `make docs`"
