"""The record of erasure requests: when, by whom, how, and what became of each; never the id.

A review of an erasure process asks who erased what and when, but the record must not
undo the erasure by keeping the id. So each entry holds the request id (the same the
control message carries), the action, the requester, the way it came (`api` or `cli`)
and its status: `requested` before the control message is sent, then `sent` once the
broker acknowledged it, or `failed`. The stream is kept whole: it is the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from service.storage.client import AnyRedis, as_text
from service.storage.keys import erasure_log

MAX_REQUESTER_LEN = 200


class RequesterError(ValueError):
    """A requester that is empty, too long or not printable."""


def checked_requester(requester: str) -> str:
    """The requester as recorded: printable, 1..200 characters, else `RequesterError`."""
    text = requester.strip()
    if not text or len(text) > MAX_REQUESTER_LEN or not text.isprintable():
        raise RequesterError(
            f"the requester must be 1..{MAX_REQUESTER_LEN} printable characters "
            "(who asked: a person, a ticket, a process)"
        )
    return text


@dataclass(frozen=True, slots=True)
class Entry:
    at: int  # epoch ms
    request_id: str
    action: str  # erase or restore
    requester: str
    via: str  # api or cli
    status: str  # requested, sent or failed

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "request_id": self.request_id,
            "action": self.action,
            "requester": self.requester,
            "via": self.via,
            "status": self.status,
        }


async def append(redis: AnyRedis, prefix: str, entries: list[Entry]) -> None:
    """Add entries to the record, in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for e in entries:
        pipe.xadd(erasure_log(prefix), {k: str(v) for k, v in e.to_json().items()})
    await pipe.execute()


async def latest(redis: AnyRedis, prefix: str, count: int) -> list[Entry]:
    """The latest `count` entries, newest first."""
    raw = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis.xrevrange(erasure_log(prefix), count=count)
    )
    out = []
    for _, fields in raw:
        f = {as_text(k): as_text(v) for k, v in fields.items()}
        out.append(Entry(int(f["at"]), f["request_id"], f["action"], f["requester"], f["via"], f["status"]))
    return out
