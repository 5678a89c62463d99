"""Channel names come from events, so their number is bounded per partition: beyond
`LIFECYCLE_MAX_CHANNELS`, new channels are counted together under `~other`. Each channel
costs index queries in every sweep of its partition, for ever; a producer inventing a
channel per event would otherwise grow every sweep without end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from service.api.app import create_api
from service.storage.keys import all_partitions
from tests.stack import T0, make_stack, visit

pytestmark = pytest.mark.integration

CAP = 6


async def test_channels_beyond_the_cap_are_counted_under_other(
    broker: Any, redis_url: str, tmp_path: Path
) -> None:
    stack = make_stack(broker, redis_url, tmp_path, LIFECYCLE_MAX_CHANNELS=str(CAP))
    users = 80
    events = [visit(f"e{i}", f"user-{i}", T0 + i, channel=f"made-up-{i}") for i in range(users)]
    stack.publish(events, single=True)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        stack.wait_swept(worker)
    finally:
        worker.stop()
    client = Redis.from_url(redis_url)
    try:
        sizes = [
            client.scard(k.channels) for k in all_partitions(stack.settings.key_prefix, stack.partitions)
        ]
    finally:
        client.close()
    assert all(0 < size <= CAP + 1 for size in sizes), sizes  # and ~other
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        body = (await api.get("/lifecycle")).json()
        assert body["total"] == users  # every user counted, some under ~other
        channels = {(await api.get(f"/users/user-{i}")).json()["channel"] for i in range(users)}
    assert "~other" in channels
    assert len(channels - {"~other"}) <= CAP * stack.partitions
