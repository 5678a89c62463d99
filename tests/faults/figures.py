"""The figures of a fault-injection run: one summary line per test on the terminal, and
`.run/faults-<test>.json` for docs/testing.md's fault-run table and for CI artifacts.

The line travels on the test's report (`user_properties`) and `tests/conftest.py` prints it
in the run's summary: under pytest-xdist a worker's own output never reaches the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

RUN_DIR = Path(__file__).resolve().parents[2] / ".run"
PROPERTY = "faults"  # the name of the line among the report's user_properties


def report(request: pytest.FixtureRequest, name: str, figures: dict[str, Any]) -> Path:
    """Put `FAULTS <name> k=v ...` on the test's report and write the JSON; returns its path."""
    line = f"FAULTS {name} " + " ".join(f"{k}={v}" for k, v in figures.items())
    request.node.user_properties.append((PROPERTY, line))
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"faults-{name}.json"
    path.write_bytes(
        orjson.dumps({"test": name, **figures}, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    return path
