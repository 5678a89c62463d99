"""The webhook deliverer against a real HTTP receiver on loopback that verifies every
request with the Standard Webhooks verifier and fails a share of first attempts."""

from __future__ import annotations

import asyncio
import base64
import random
from collections import defaultdict

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from service.core.webhook_delivery import Verdict
from service.settings import Settings
from service.webhooks.lanes import Deliverer, Lanes, client
from service.webhooks.metrics import WebhookMetrics
from service.webhooks.signing import Signer

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


async def test_every_trigger_verified_in_order_per_user_failures_retried() -> None:
    seen: dict[str, int] = defaultdict(int)
    order: dict[str, list[int]] = defaultdict(list)
    verifier = Webhook(SECRET)
    rng = random.Random(7)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        event = verifier.verify(body, dict(request.headers))  # raises if unsigned or tampered
        seen[event["id"]] += 1
        if event["data"]["n"] < 0:
            return web.Response(status=422)
        if seen[event["id"]] == 1:
            roll = rng.random()
            if roll < 0.2:
                return web.Response(status=500)
            if roll < 0.35:
                return web.Response(status=429, headers={"Retry-After": "0"})
            if roll < 0.45:
                await asyncio.sleep(1.5)  # past the relay's timeout: it has given up
                return web.Response(status=503)
        order[event["subject"]].append(event["data"]["n"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = Settings(
        webhook_timeout=1.0, webhook_backoff_base=0.01, webhook_backoff_cap=0.05, webhook_max_attempts=8
    )
    attempts: list[int] = []
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    try:
        async with client(settings) as http:
            deliverer = Deliverer(
                http,
                f"http://127.0.0.1:{port}/hook",
                Signer(SecretStr(SECRET)),
                settings,
                attempts.append,
                metrics=metrics,
            )
            lanes = Lanes(deliverer.deliver)
            tasks = []
            for n in range(200):
                user = f"u{n % 10}"
                value = -1 if n == 55 else n
                body = orjson.dumps({"id": f"t{n}", "subject": user, "data": {"n": value}})
                tasks.append(lanes.submit(user, f"t{n}", body))
            outcomes = await asyncio.gather(*tasks)
    finally:
        await runner.cleanup()
    dead = [o for o in outcomes if o.verdict is Verdict.DEAD]
    assert [(o.event_id, o.status) for o in dead] == [("t55", 422)]
    for n in range(10):
        expected = [k for k in range(n, 200, 10) if k != 55]
        assert order[f"u{n}"] == expected
    assert any(o.attempts > 1 for o in outcomes)
    assert {0, 429, 500} <= set(attempts)
    assert registry.get_sample_value("lifecycle_webhook_deliveries_total", {"result": "delivered"}) == 199
    assert registry.get_sample_value("lifecycle_webhook_deliveries_total", {"result": "dead"}) == 1
    assert registry.get_sample_value("lifecycle_webhook_attempts_total", {"status_class": "5xx"}) > 0
    assert registry.get_sample_value("lifecycle_webhook_latency_seconds_count") == len(attempts)
