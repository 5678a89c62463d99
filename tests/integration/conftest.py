"""Fixtures of the integration tests: a fresh `Stack` (topics, keys, group) per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api import create_api
from service.cli import ensure_topics
from service.settings import Settings
from tests.stack import PARTITIONS, Stack


@pytest.fixture
def stack(broker: Any, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "LIFECYCLE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LIFECYCLE_REDIS_URL": redis_url,
        "LIFECYCLE_EVENTS_TOPIC": f"events-{suffix}",
        "LIFECYCLE_DLQ_TOPIC": f"events-{suffix}.dlq",
        "LIFECYCLE_TRIGGERS_TOPIC": f"triggers-{suffix}",
        "LIFECYCLE_PARTITIONS": str(PARTITIONS),
        "LIFECYCLE_APP_ID": f"lifecycle-{suffix}",
        "LIFECYCLE_KEY_PREFIX": f"t{suffix}",
        "LIFECYCLE_CLOCK": "event",
        "LIFECYCLE_PROFILE": "daily_app",
        "LIFECYCLE_WORKER_PORT": "0",
        "LIFECYCLE_SWEEP_INTERVAL": "0.2",
        "LIFECYCLE_SESSION_TIMEOUT": "6",
    }
    settings = Settings(**{k.removeprefix("LIFECYCLE_").lower(): v for k, v in env.items()})
    ensure_topics(settings)
    yield Stack(env, settings, tmp_path)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client
