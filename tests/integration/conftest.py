"""Fixtures of the integration tests: a fresh `Stack` (topics, keys, group) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_api
from tests.stack import Stack, make_stack


@pytest.fixture
def stack(broker: Any, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield make_stack(broker, redis_url, tmp_path)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        yield client
