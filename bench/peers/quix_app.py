"""`quix`: the lifecycle rules in Quix Streams, per-user state in its own RocksDB store.

What a team would pick instead of this service. Runs in its own virtualenv (Quix Streams
pins other versions of pydantic than the service): `bench/.venv-quix/bin/python -m
bench.peers.quix_app` with PEER_BOOTSTRAP, PEER_TOPIC, PEER_TOTAL, PEER_GROUP and
PEER_STATE_DIR set.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from quixstreams import Application, State

from bench.peers.report import Meter
from bench.peers.rules import apply

meter = Meter(int(os.environ["PEER_TOTAL"]))
transitions: Counter[str] = Counter()


def lifecycle(event: dict[str, Any], state: State) -> None:
    user, transition = apply(state.get("user"), event)
    if user is not None:
        state.set("user", user)
    if transition:
        transitions[transition] += 1
    meter.tick(time.perf_counter())


def main() -> None:
    app = Application(
        broker_address=os.environ["PEER_BOOTSTRAP"],
        consumer_group=os.environ["PEER_GROUP"],
        auto_offset_reset="earliest",
        state_dir=os.environ["PEER_STATE_DIR"],
        loglevel="WARNING",
    )
    topic = app.topic(os.environ["PEER_TOPIC"], value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    sdf.update(lifecycle, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
