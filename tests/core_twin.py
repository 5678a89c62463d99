"""One run of the core, written out canonically, so the compiled and the Python build can be compared.

`run(request)` decodes raw messages, applies batches of events and sweeps, the way a
partition's worker chains them, and returns everything each step produced as JSON.
`python -m tests.core_twin` answers requests read from stdin, one per line, in whichever
build the process imports (`LIFECYCLE_PURE_PYTHON=1`: the sources).
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson

from service.core import BUILD
from service.core.batch import apply_events, sweep
from service.core.events import Event, decode_message
from service.core.profile import Profile, load_profile
from service.core.records import UserRecord
from tests.unit.test_named_funnels import PROFILE as NAMED_FUNNELS  # in Paris time


@cache
def profile(name: str) -> Profile:
    return NAMED_FUNNELS if name == "named_funnels" else load_profile(name)


def canonical(value: Any) -> Any:
    """Plain JSON of any result: records as their stored bytes, sets and mappings sorted."""
    if isinstance(value, UserRecord):
        return value.pack().hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return sorted([str(k), canonical(v)] for k, v in value.items())
    if isinstance(value, set | frozenset):
        return sorted(repr(v) for v in value)
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float):
        return repr(value)
    return value


def run(request: dict[str, Any]) -> list[Any]:
    """Each step's output: `["decode", b64]`, `["apply", [event fields], swept]`, `["sweep", swept, now]`."""
    prof = profile(request["profile"])
    records: dict[str, UserRecord] = {}
    suppressed: set[str] = set()
    merged: dict[str, str] = {}
    sent: list[Event] = []  # control messages a batch produced (merges), applied with the next
    out: list[Any] = []
    for step in request["steps"]:
        if step[0] == "decode":
            events, rejected = decode_message(base64.b64decode(step[1]))
            out.append(canonical([events, rejected]))
        elif step[0] == "apply":
            batch = [*sent, *(Event(*fields) for fields in step[1])]
            users = {ev.user_id for ev in batch}
            result = apply_events(
                {u: records.get(u) for u in users},
                batch,
                step[2],
                prof,
                suppressed=users & suppressed,
                merged_into={u: merged[u] for u in users if u in merged},
            )
            records.update(result.records)
            for uid in result.deleted:
                records.pop(uid, None)
            suppressed = (suppressed | result.suppress) - result.unsuppress
            merged.update(result.tombstones)
            sent = [ev for _key, value in result.outgoing for ev in decode_message(value)[0]]
            out.append(canonical(result))
        else:
            swept = sweep(dict(records), step[1], step[2], prof, mark_accounted=True)
            records.update(swept.records)
            out.append(canonical(swept))
    out.append(canonical(records))
    return out


def main() -> None:
    print(orjson.dumps({"build": BUILD}).decode(), flush=True)
    for line in sys.stdin:
        print(orjson.dumps(run(orjson.loads(line))).decode(), flush=True)


if __name__ == "__main__":
    main()
