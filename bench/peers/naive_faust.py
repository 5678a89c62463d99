"""`naive_faust`: the lifecycle rules written the way most Faust apps are.

One agent over the one-event topic, events as a `faust.Record`, and for every event a
Redis read of the user, the rules, a Redis write of the user and a counter increment
per transition. Run as `python -m bench.peers.naive_faust worker -l warn` with
PEER_BOOTSTRAP, PEER_TOPIC, PEER_TOTAL, PEER_GROUP and PEER_REDIS set.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import faust
import orjson
from redis.asyncio import Redis

from bench.peers.group import group_timeouts
from bench.peers.report import Meter
from bench.peers.rules import apply


class UserEvent(faust.Record, serializer="json"):
    event_id: str
    user_id: str
    type: str
    ts: int
    channel: str | None = None
    amount: float | None = None
    properties: dict[str, Any] | None = None


app = faust.App(
    os.environ["PEER_GROUP"],
    broker=f"kafka://{os.environ['PEER_BOOTSTRAP']}",
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    web_enabled=False,
    datadir=os.path.join(tempfile.gettempdir(), "{conf.name}-data"),
    **group_timeouts(),
)
topic = app.topic(os.environ["PEER_TOPIC"], value_type=UserEvent)
meter = Meter(int(os.environ["PEER_TOTAL"]))
redis = Redis.from_url(os.environ["PEER_REDIS"])


@app.agent(topic)
async def lifecycle(stream: faust.StreamT[UserEvent]) -> None:
    async for event in stream:
        key = f"naive:user:{event.user_id}"
        raw = await redis.get(key)
        user, transition = apply(orjson.loads(raw) if raw else None, event.asdict())
        if user is not None:
            await redis.set(key, orjson.dumps(user))
        if transition:
            await redis.hincrby("naive:transitions", transition, 1)
        meter.tick(time.perf_counter())


if __name__ == "__main__":
    app.main()
