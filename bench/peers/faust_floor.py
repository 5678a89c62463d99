"""`faust_floor`: a minimal Faust agent that only decodes one-event messages.

The ceiling of anything built on Faust's per-message stream. Run as
`python -m bench.peers.faust_floor worker -l warn` with PEER_BOOTSTRAP, PEER_TOPIC,
PEER_TOTAL and PEER_GROUP set; prints `{"events_per_s": ...}` once PEER_TOTAL events
were seen, then exits.
"""

from __future__ import annotations

import os
import tempfile
import time

import faust
import orjson

from bench.peers.group import group_timeouts
from bench.peers.report import Meter

app = faust.App(
    os.environ["PEER_GROUP"],
    broker=f"kafka://{os.environ['PEER_BOOTSTRAP']}",
    value_serializer="raw",
    key_serializer="raw",
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    web_enabled=False,
    datadir=os.path.join(tempfile.gettempdir(), "{conf.name}-data"),
    **group_timeouts(),
)
topic = app.topic(os.environ["PEER_TOPIC"], value_type=bytes)
meter = Meter(int(os.environ["PEER_TOTAL"]))


@app.agent(topic)
async def decode(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        orjson.loads(value)
        meter.tick(time.perf_counter())


if __name__ == "__main__":
    app.main()
