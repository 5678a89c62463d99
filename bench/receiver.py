"""A webhook receiver on loopback for the benchmarks: aiohttp, one POST route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


async def start_receiver(
    handle: Callable[[web.Request], Awaitable[web.Response]], path: str = "/hook"
) -> tuple[web.AppRunner, str]:
    """Serve `handle` at `path` on a free loopback port; the runner (to clean up) and the URL."""
    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}{path}"
