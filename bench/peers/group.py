"""The peers' consumer-group timeouts: Faust's own (60 s) unless `PEER_SESSION_TIMEOUT` is set.

Tansu completes a group's first join after about half the rebalance timeout, 30 s with
Faust's default; the benchmark's smoke run, on Tansu, sets 3 s so that its peers do not
spend most of it joining. The rate a peer reports starts at its first event either way.
"""

from __future__ import annotations

import os


def group_timeouts() -> dict[str, float]:
    """`faust.App` settings: session and rebalance timeouts, and a heartbeat well inside them."""
    text = os.environ.get("PEER_SESSION_TIMEOUT")
    if not text:
        return {}
    session = float(text)
    return {
        "broker_session_timeout": session,
        "broker_rebalance_timeout": session,
        "broker_heartbeat_interval": max(1.0, session / 5),
    }
