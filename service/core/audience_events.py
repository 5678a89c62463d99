"""An audience member as a CloudEvent (what `lifecycle audience publish` writes to Kafka).

The id is a digest of (audience, run key, user): publishing the same audience with the
same `--campaign` again yields the same ids, so a messaging system that de-duplicates on
the CloudEvents id (source + id) contacts each user once per campaign, however often
the operator re-runs the command.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def audience_event_id(audience: str, campaign: str, user_id: str) -> str:
    digest = hashlib.blake2b(f"{audience}\x1f{campaign}\x1f{user_id}".encode(), digest_size=16)
    return digest.hexdigest()


def audience_cloudevent(
    user: dict[str, Any], audience: str, campaign: str, as_of: str, source: str, type_prefix: str
) -> bytes:
    """`user` is an audience row (user_id, state, channel, stage, segment, last_active, entered_at)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": audience_event_id(audience, campaign, user["user_id"]),
            "source": source,
            "type": f"{type_prefix}.lifecycle.audience.v1",
            "subject": user["user_id"],
            "time": as_of,
            "datacontenttype": "application/json",
            "data": {"audience": audience, "campaign": campaign, **user},
        }
    )
