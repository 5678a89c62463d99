"""Names of the per-partition counters the batch commit increments.

The core returns counter deltas as `{name: delta}`; the store adds them to one hash per
partition and the API sums the partitions. The names are built here only, so writer
and reader cannot disagree. Channels and types are validated tokens (no `|`).
"""

from __future__ import annotations

SEP = "|"


def users(channel: str) -> str:
    return f"users{SEP}{channel}"


def stage(channel: str, index: int) -> str:
    return f"stage{SEP}{channel}{SEP}{index}"


def transition(from_state: str, to_state: str) -> str:
    """`from_state` is `-` when a user first appears."""
    return f"tr{SEP}{from_state}{SEP}{to_state}"


def event_type(etype: str) -> str:
    return f"ev{SEP}{etype}"


def orders(channel: str) -> str:
    return f"orders{SEP}{channel}"


def revenue(channel: str) -> str:
    return f"revenue{SEP}{channel}"


def payers(channel: str) -> str:
    """Users with at least one order or renewal."""
    return f"payers{SEP}{channel}"


def registered(channel: str) -> str:
    """Users with at least one `register` event."""
    return f"registered{SEP}{channel}"


def return_gap(channel: str, bucket: int) -> str:
    """Returns whose gap fell in bucket `bucket` of `service.core.gaps.BOUNDS_MS`."""
    return f"gap{SEP}{channel}{SEP}{bucket}"


def cohort(channel: str, day: int) -> str:
    """Users first seen on `day` (local days since the epoch in the profile's time zone)."""
    return f"cohort{SEP}{channel}{SEP}{day}"


def retained(channel: str, day: int, after_days: int) -> str:
    """Users of the `day` cohort active again on day `day + after_days`."""
    return f"ret{SEP}{channel}{SEP}{day}{SEP}{after_days}"


def cost(channel: str) -> str:
    """Acquisition cost sent as `channel_cost` events."""
    return f"cost{SEP}{channel}"


def time_to_convert(stage_index: int, bucket: int) -> str:
    """Users reaching a stage, by the bucket of the time since they were first seen (-1: < 1 h)."""
    return f"ttc{SEP}{stage_index}{SEP}{bucket}"


def high_value(change: str, month: str) -> str:
    """High-value users `gained` (monetary threshold crossed), `lost` (churned), `recalled`, per month."""
    return f"hv{SEP}{change}{SEP}{month}"


def trigger(kind: str, channel: str, status: str) -> str:
    """Triggers of `kind` by what happened to them (`service.core.triggers.STATUSES`)."""
    return f"tg{SEP}{kind}{SEP}{channel}{SEP}{status}"


def trigger_outcome(kind: str, channel: str, group: str, outcome: str) -> str:
    """Fired triggers with `outcome` attributed, in the `treated` or the `holdout` group."""
    return f"to{SEP}{kind}{SEP}{channel}{SEP}{group}{SEP}{outcome}"


def recall(origin: str, channel: str, status: str) -> str:
    """Recall triggers by the state the user was recalled from (which decides the plan), by
    what happened to them; a breakdown of `trigger("recall", ...)`."""
    return f"tgr{SEP}{origin}{SEP}{channel}{SEP}{status}"


def recall_outcome(origin: str, channel: str, group: str, outcome: str) -> str:
    """Outcomes of recalls by the state the user was recalled from; a breakdown of
    `trigger_outcome("recall", ...)`."""
    return f"tor{SEP}{origin}{SEP}{channel}{SEP}{group}{SEP}{outcome}"


def named_funnel(funnel: str, channel: str, step: int) -> str:
    """Users at step `step` or further of the named funnel `funnel` (service.core.named_funnels)."""
    return f"fn{SEP}{funnel}{SEP}{channel}{SEP}{step}"


def named_funnel_cohort(funnel: str, channel: str, week: int, step: int) -> str:
    """Of them, those who entered the funnel in the week starting on Monday `week` (a day number)."""
    return f"fnc{SEP}{funnel}{SEP}{channel}{SEP}{week}{SEP}{step}"


def interval_users(granularity: str, first_day: int, channel: str, kind: str) -> str:
    """Users of `kind` (new, returning, resurrecting, dormant) in the day, week or month that
    starts on local day `first_day`, per channel (`*`: all channels)."""
    return f"lci{SEP}{granularity}{SEP}{first_day}{SEP}{channel}{SEP}{kind}"


COHORT_PREFIXES = ("cohort|", "ret|")  # kept in their own hash: one field per day and channel
FUNNEL_COHORT_PREFIX = "fnc|"  # in a hash of their own too: one field per funnel, week, channel, step
INTERVAL_PREFIX = "lci|"  # kept in their own hash too: one field per interval, channel and kind


DUPLICATES = "duplicates"
REJECTED = "rejected"
MISROUTED = "misrouted"
UNDELIVERABLE = "undeliverable"  # dead letters or re-routed events no send could deliver
UNKNOWN_USER = "unknown_user_events"
APPLIED = "applied"
LOG_REBASED = "log_rebased"  # the events topic became a new log under the applied offset
ERASED = "erasures"  # erase requests applied (service.core.erasure)
RESTORED = "restores"  # restore requests applied: the id left the suppression list
SUPPRESSED = "suppressed_events"  # events of an erased id, dropped
MERGED_OUT = "merges_out"  # ids merged into another (service.core.identity): their records sent
MERGED_IN = "merges_in"  # merged records folded into their known id
MERGES_IGNORED = "merges_ignored"  # merge requests for an id merged already, or into itself
MERGE_CYCLES = "merge_cycles"  # merged records that followed merged ids in a circle, dropped
MERGED_EVENTS = "merged_id_events"  # events of a merged id, sent on under the id it went into


def split(name: str) -> list[str]:
    return name.split(SEP)
