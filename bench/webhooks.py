"""Webhook deliveries per second: the deliverer against a local aiohttp receiver that
verifies every signature with standardwebhooks (the receiver's cost is included).

    .venv/bin/python -m bench.webhooks [events] [users]
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time

import orjson
from aiohttp import web
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from bench.receiver import start_receiver
from service.settings import Settings
from service.webhooks.lanes import Deliverer, Lanes, client
from service.webhooks.signing import Signer

SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


async def main(events: int, users: int) -> None:
    verifier = Webhook(SECRET)

    async def receive(request: web.Request) -> web.Response:
        verifier.verify(await request.read(), dict(request.headers))
        return web.Response(status=204)

    runner, url = await start_receiver(receive)
    settings = Settings()
    bodies = [
        (f"u{n % users}", f"t{n}", orjson.dumps({"id": f"t{n}", "subject": f"u{n % users}", "data": {}}))
        for n in range(events)
    ]
    try:
        async with client(settings) as http:
            lanes = Lanes(Deliverer(http, url, Signer(SecretStr(SECRET)), settings).deliver)
            start = time.perf_counter()
            await asyncio.gather(*(lanes.submit(u, i, b) for u, i, b in bodies))
            took = time.perf_counter() - start
    finally:
        await runner.cleanup()
    print(
        f"{events} deliveries, {users} users, concurrency {settings.webhook_concurrency}: "
        f"{took:.2f}s, {events / took:,.0f}/s"
    )


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, int(sys.argv[2]) if len(sys.argv) > 2 else 500)
    )
