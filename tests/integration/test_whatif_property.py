"""What-if counts against a real Redis, for generated users and thresholds.

Users are committed through the worker's own code (pure `apply_events`, the fenced
commit, a sweep), then `GET /lifecycle/what-if` must equal `state_at` applied to every
user under the asked thresholds, and with the profile's own thresholds it must equal
`GET /lifecycle`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from service.api.app import create_api
from service.core.batch import apply_events
from service.core.durations import DAY_MS, format_duration
from service.core.events import Event
from service.core.lifecycle import STATES, Thresholds, state_at
from service.core.partitioning import partition_for
from service.dev.redis_server import RedisServer
from service.settings import Settings
from service.storage.store import RedisStore
from service.worker.outgoing import Outgoing
from service.worker.processor import PartitionProcessor

pytestmark = pytest.mark.integration

PARTITIONS = 3
NOW = 1_790_000_000_000
CHANNELS = ("organic", "ads", "social")
HOUR_MS = DAY_MS // 24

# A user: channel, first activity and last activity as hours before NOW (0 = one event).
user_spec = st.tuples(
    st.sampled_from(CHANNELS),
    st.integers(min_value=0, max_value=400 * 24),
    st.integers(min_value=0, max_value=400 * 24),
)


@st.composite
def thresholds(draw: st.DrawFn) -> Thresholds:
    """Valid what-if thresholds in whole hours: new_window <= silent < churn < dead."""
    new_window = draw(st.integers(min_value=1, max_value=30 * 24))
    silent = draw(st.integers(min_value=new_window, max_value=120 * 24))
    churn = draw(st.integers(min_value=silent + 1, max_value=240 * 24))
    dead = draw(st.integers(min_value=churn + 1, max_value=420 * 24))
    return Thresholds(new_window * HOUR_MS, silent * HOUR_MS, churn * HOUR_MS, dead * HOUR_MS)


class _NoSink:
    async def send_and_wait(self, messages: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        raise AssertionError("a sweep does not send")

    async def last_header(self, topic: str, partition: int, header: str) -> list[bytes]:
        raise AssertionError("a sweep does not relay")


def _events(users: list[tuple[str, int, int]]) -> list[Event]:
    events = []
    for i, (channel, a, b) in enumerate(users):
        first, last = NOW - max(a, b) * HOUR_MS, NOW - min(a, b) * HOUR_MS
        events.append(Event(f"e{i}a", f"u{i}", "visit", first, channel))
        if last != first:
            events.append(Event(f"e{i}b", f"u{i}", "visit", last, channel))
    return sorted(events, key=lambda e: e.ts)


async def _commit(redis: Redis, s: Settings, events: list[Event]) -> None:
    """One batch per partition through the store, then a sweep to NOW, as a worker would."""
    store = RedisStore(redis, s.key_prefix, s.dedup_window_s)
    swept = NOW - 500 * DAY_MS
    for p in range(PARTITIONS):
        await store.claim(p)
        snap = await store.load(p, [], {})
        mine = [e for e in events if partition_for(e.user_id, PARTITIONS) == p]
        result = apply_events({}, mine, swept, s.loaded_profile, s.first_index_window_ms)
        await store.commit_batch(p, snap.meta, result, offset=0, new_digests={}, swept=swept)
        await redis.hset(store.keys(p).meta, mapping={"swept": swept, "wm": NOW})
    processor = PartitionProcessor(store, _NoSink(), s, s.loaded_profile)
    for p in range(PARTITIONS):
        await processor.sweep(p)


def _expected(users: list[tuple[str, int, int]], th: Thresholds, channel: str | None) -> dict[str, int]:
    counts = Counter(
        state_at(NOW - max(a, b) * HOUR_MS, NOW - min(a, b) * HOUR_MS, NOW, th).value
        for ch, a, b in users
        if channel in (None, ch)
    )
    return {s.value: counts.get(s.value, 0) for s in STATES}


@pytest.fixture(scope="module")
def redis_for_examples(tmp_path_factory: pytest.TempPathFactory) -> object:
    with RedisServer(tmp_path_factory.mktemp("whatif-redis")) as server:
        yield server


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=st.lists(user_spec, min_size=1, max_size=60), asked=thresholds())
def test_what_if_counts_every_user_as_state_at_would(
    redis_for_examples: RedisServer, users: list[tuple[str, int, int]], asked: Thresholds
) -> None:
    s = Settings(redis_url=redis_for_examples.url, partitions=PARTITIONS, clock="event", profile="daily_app")
    own = s.loaded_profile.thresholds
    question = {f.name: format_duration(getattr(asked, f.name)) for f in dataclasses.fields(asked)}

    async def run() -> None:
        redis = Redis.from_url(s.redis_url)
        try:
            await redis.flushall()
            await _commit(redis, s, _events(users))
            api = httpx.AsyncClient(
                transport=httpx.ASGITransport(create_api(s, redis)), base_url="http://api"
            )
            async with api:
                for channel in (None, *CHANNELS):
                    ch = {"channel": channel} if channel else {}
                    plain = (await api.get("/lifecycle", params=ch)).json()
                    assert plain["counts"] == _expected(users, own, channel)
                    same = (await api.get("/lifecycle/what-if", params=ch)).json()
                    assert (same["counts"], same["total"]) == (plain["counts"], plain["total"])
                    body = (await api.get("/lifecycle/what-if", params={**question, **ch})).json()
                    assert body["counts"] == _expected(users, asked, channel), question
        finally:
            await redis.aclose()

    asyncio.run(run())
