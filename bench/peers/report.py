"""Counting a peer app's events and reporting its rate the moment the last one is done."""

from __future__ import annotations

import json
import os


class Meter:
    """Counts events; at `total` prints the rate (from the first event) and ends the process."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.started = 0.0

    def tick(self, now: float, n: int = 1) -> None:
        if not self.seen:
            self.started = now
        self.seen += n
        if self.seen >= self.total:
            rate = (self.seen - 1) / max(now - self.started, 1e-9)
            # a file, not stdout: Faust redirects stdout into its log
            with open(os.environ["PEER_RESULT"], "w") as out:
                out.write(json.dumps({"events_per_s": round(rate)}) + "\n")
            os._exit(0)  # the measurement is done; no graceful shutdown to wait for
