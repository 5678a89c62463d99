"""The figures of a fault-injection run: one summary line per test on the terminal, and
`.run/faults-<test>.json` for docs/testing.md's fault-run table and for CI artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

RUN_DIR = Path(__file__).resolve().parents[2] / ".run"


def report(request: pytest.FixtureRequest, name: str, figures: dict[str, Any]) -> Path:
    """Print `FAULTS <name> k=v ...` past pytest's capture and write the JSON; returns its path."""
    line = f"FAULTS {name} " + " ".join(f"{k}={v}" for k, v in figures.items())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)
    else:
        print(line)
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"faults-{name}.json"
    path.write_bytes(
        orjson.dumps({"test": name, **figures}, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    return path
