"""The worker's garbage collector settings (service/worker/collector.py)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from service.worker.collector import YOUNG_THRESHOLD, tune_for_batches
before = gc.get_freeze_count()
tune_for_batches()
assert gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_threshold()
assert gc.get_freeze_count() > before + 1_000, gc.get_freeze_count()  # what is loaded
cycle = []
cycle.append(cycle)
del cycle
assert gc.collect() >= 1  # cycles made afterwards are still collected
print("ok")
"""


def test_the_start_up_heap_is_frozen_and_later_cycles_are_still_collected() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
