"""Delivering trigger CloudEvents to a webhook: one user's events in order, users at once.

Each user has a lane: their triggers are posted one after another (the next waits
until the previous is delivered or dead-lettered), while other users' lanes go on, so
a slow or failing trigger never holds up anyone else. A semaphore bounds the requests
in flight; the aiohttp session bounds timeouts and its connection pool. (aiohttp, already
a dependency of Faust, costs several times less CPU per request than httpx here.)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from service.core.webhook_delivery import TIMEOUT, Verdict, backoff, retry_after, verdict
from service.settings import Settings
from service.webhooks.metrics import WebhookMetrics
from service.webhooks.signing import Signer


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one trigger ended: delivered or dead, after how many attempts, last status."""

    event_id: str
    verdict: Verdict
    status: int
    attempts: int


MAX_ANSWER_BYTES = 64 << 10  # of a receiver's answer body read (and then dropped)


def client(settings: Settings) -> aiohttp.ClientSession:
    """An HTTP client with the relay's bounds: per-attempt timeout, pool of `concurrency`.
    Created in the running event loop."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout),
        connector=aiohttp.TCPConnector(limit=settings.webhook_concurrency),
        auto_decompress=False,
    )


class Deliverer:
    """Posts one event with retries; `on_attempt(status)` counts every attempt."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        signer: Signer,
        settings: Settings,
        on_attempt: Callable[[int], None] = lambda status: None,
        rng: random.Random | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._http, self._url, self._signer, self._s = http, url, signer, settings
        self._on_attempt = on_attempt
        self._rng = rng or random.Random()
        self._gate = asyncio.Semaphore(settings.webhook_concurrency)

    async def _attempt(self, event_id: str, body: bytes) -> tuple[int, str | None]:
        async with self._gate:
            try:
                async with self._http.post(
                    self._url, data=body, headers=self._signer.headers(event_id, body), allow_redirects=False
                ) as response:
                    await response.content.read(MAX_ANSWER_BYTES)  # the rest, if any, closes the connection
                    return response.status, response.headers.get("retry-after")
            except (aiohttp.ClientError, TimeoutError):  # timeouts, refused or reset connections
                return TIMEOUT, None

    async def deliver(self, event_id: str, body: bytes) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            status, asked = await self._attempt(event_id, body)
            self._on_attempt(status)
            decided = verdict(status, attempt, self._s.webhook_max_attempts)
            if self._metrics is not None:
                self._metrics.attempt(status, time.perf_counter() - started)
                if decided is not Verdict.RETRY:
                    self._metrics.finished(decided)
            if decided is not Verdict.RETRY:
                return Outcome(event_id, decided, status, attempt)
            cap = self._s.webhook_backoff_cap
            wait = retry_after(asked, time.time(), cap) if status == 429 else None
            await asyncio.sleep(backoff(attempt, self._s.webhook_backoff_base, cap, self._rng, wait))


class Lanes:
    """Per-user ordered chains of deliveries; `submit` returns at once."""

    def __init__(self, deliver: Callable[[str, bytes], Awaitable[Outcome]]) -> None:
        self._deliver = deliver
        self._tails: dict[str, asyncio.Task[Outcome]] = {}

    def _forget(self, user_id: str, task: asyncio.Task[Outcome]) -> None:
        if self._tails.get(user_id) is task:  # a user with nothing queued keeps no lane
            del self._tails[user_id]

    def submit(self, user_id: str, event_id: str, body: bytes) -> asyncio.Task[Outcome]:
        before = self._tails.get(user_id)

        async def run() -> Outcome:
            if before is not None:
                await asyncio.shield(before)
            return await self._deliver(event_id, body)

        task = asyncio.ensure_future(run())
        self._tails[user_id] = task
        task.add_done_callback(lambda t: self._forget(user_id, t))
        return task
