"""The lifecycle rules, written plainly for the peer apps (no imports from the service).

Per user: first_seen, last_active and event counts; the stage from the fintech
profile's thresholds (new 14d, silent 14d, churned 45d, dead 180d), and a transition
counted whenever an event changes it. What a team would write in a Faust or Quix
Streams app: the same rules as `service.core`, without its batching.
"""

from __future__ import annotations

from typing import Any

DAY = 86_400_000
NEW_WINDOW, SILENT, CHURNED, DEAD = 14 * DAY, 14 * DAY, 45 * DAY, 180 * DAY
ACTIVITY = {"visit", "login", "register", "verify", "bind_card", "order", "renew", "payment_click", "paid"}


def stage(first_seen: int, last_active: int, now: int) -> str:
    idle = now - last_active
    if idle >= DEAD:
        return "dead"
    if idle >= CHURNED:
        return "churned"
    if idle >= SILENT:
        return "silent"
    return "new" if now - first_seen < NEW_WINDOW else "retained"


def apply(user: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The user's new state and the transition the event caused (`from>to`), if any."""
    ts, etype = int(event["ts"]), event["type"]
    if user is None:
        if etype not in ACTIVITY:
            return None, None
        user = {"first_seen": ts, "last_active": ts, "counts": {etype: 1}, "channel": event.get("channel")}
        return user, f"-> {stage(ts, ts, ts)}"
    now = max(ts, user["last_active"])
    before = stage(user["first_seen"], user["last_active"], now)
    if etype in ACTIVITY and ts > user["last_active"]:
        user["last_active"] = ts
    user["first_seen"] = min(user["first_seen"], ts)
    user["counts"][etype] = user["counts"].get(etype, 0) + 1
    after = stage(user["first_seen"], user["last_active"], now)
    return user, (f"{before}>{after}" if after != before else None)
