"""`LIFECYCLE_FAULTS=short` (default, CI) or `full` (the issue's sizes): how big fault tests run."""

from __future__ import annotations

import os


def full() -> bool:
    return os.environ.get("LIFECYCLE_FAULTS", "short") == "full"
