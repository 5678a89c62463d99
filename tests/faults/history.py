"""The fault-injection runs' material: a profile whose history fires every kind of trigger,
a stack on it, the generated history, a paced stream of it, and what Redis says about
progress and ownership (read directly, as the checks between faults need)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import yaml

from service.core.profile import Profile, parse_profile
from service.storage.keys import all_partitions
from tests.processes import ServiceProcess, sync_redis, wait_for
from tests.stack import T0, Stack, make_stack

PROFILE_YAML = """
name: faults
lifecycle: {new_window: 3d, silent_after: 3d, churn_after: 14d, dead_after: 60d}
activity_types: [visit, login, view, register, verify, order, renew, payment_click, paid, message_click]
revenue_types: [order, renew]
funnel:
  - {name: visit, event: visit}
  - {name: register, event: register}
  - {name: first_order, event: order}
  - {name: renewal, event: renew}
triggers:
  recall:
    silent: {delay: 0d, tier: push_nudge}
    churned: {delay: 0d, tier: comeback_coupon}
    dead: {delay: 0d, tier: login_bonus}
  renewal: {reminders: [30d, 7d, 1d]}
  onboarding: {after: [register], window: 2d}
  holdout_percent: 10
"""
"""A daily app's thresholds with insurance-style policies: the generator then writes renewals,
so recalls, renewal reminders, expiries and onboarding all fire (no quiet hours or cap, so
every recall is due exactly where the reference says a user entered its state)."""


def fault_stack(broker: Any, redis_url: str, workdir: Path, partitions: int) -> Stack:
    """A stack on `PROFILE_YAML`, event clock, its own topics, keys and group."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / "faults-profile.yaml"
    profile.write_text(PROFILE_YAML)
    return make_stack(broker, redis_url, workdir, partitions, LIFECYCLE_PROFILE=str(profile))


def trigger_history(users: int, days: int = 90, seed: int = 11) -> list[dict[str, Any]]:
    """A generated history in time order: sessions, core path, lapses and returns, policies."""
    from service.dev.generator import generate

    return list(generate(users=users, start_ms=T0, days=days, seed=seed, profile=fault_profile()))


def fault_profile() -> Profile:
    return parse_profile(yaml.safe_load(PROFILE_YAML), source="faults profile")


def partition_generations(stack: Stack) -> dict[int, int]:
    """Each partition's owner generation in Redis meta: how many times it was claimed."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return {
            k.partition: int(client.hget(k.meta, "gen") or 0)
            for k in all_partitions(s.key_prefix, s.partitions)
        }
    finally:
        client.close()


def applied_total(stack: Stack) -> int:
    """Messages committed to Redis so far, over all partitions (the applied offsets)."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return sum(
            int(client.hget(k.meta, "offset") or -1) + 1 for k in all_partitions(s.key_prefix, s.partitions)
        )
    finally:
        client.close()


def wait_progress(stack: Stack, since: int, proc: ServiceProcess, timeout: float = 180) -> None:
    """Wait until the worker commits messages beyond `since` (an `applied_total`)."""
    wait_for(lambda: applied_total(stack) > since, timeout, "the worker to apply new events", proc)


def outbox_length(stack: Stack) -> int:
    """Fired triggers committed but not yet relayed, over all partitions."""
    s = stack.settings
    client = sync_redis(s.redis_url, s.redis_cluster)
    try:
        return sum(int(client.xlen(k.outbox)) for k in all_partitions(s.key_prefix, s.partitions))
    finally:
        client.close()


def paced_publish(
    stack: Stack, events: list[dict[str, Any]], seconds: float, parts: int = 8
) -> threading.Thread:
    """Publish `events` in `parts` pieces spread over `seconds`, in the background: a stream."""

    def run() -> None:
        step = max(1, -(-len(events) // parts))
        for i in range(0, len(events), step):
            stack.publish(events[i : i + step])
            time.sleep(seconds / parts)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
