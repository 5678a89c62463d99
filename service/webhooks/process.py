"""Running `lifecycle webhooks`: its configuration checked, metrics served, signals handled."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry, start_http_server

from service.core.webhook_delivery import check_url
from service.settings import Settings
from service.webhooks.lanes import Deliverer, client
from service.webhooks.metrics import WebhookMetrics
from service.webhooks.relay import RelayStats, WebhookRelay
from service.webhooks.signing import Signer

log = logging.getLogger(__name__)


def configuration_error(settings: Settings) -> str | None:
    """Why the relay cannot start with these settings, in one line, or None."""
    if not settings.webhook_url:
        return "LIFECYCLE_WEBHOOK_URL is not set: where should triggers be POSTed?"
    try:
        check_url(settings.webhook_url, settings.webhook_allow_http)
    except ValueError as exc:
        return f"LIFECYCLE_WEBHOOK_URL: {exc}"
    secret = settings.webhook_secret
    if secret is None or not secret.get_secret_value().startswith("whsec_"):
        return "LIFECYCLE_WEBHOOK_SECRET must be a Standard Webhooks secret (whsec_ + base64)"
    try:
        Signer(secret)
    except Exception:  # the library's own error names the secret's bytes: never echo them
        return "LIFECYCLE_WEBHOOK_SECRET is not valid base64 after whsec_"
    return None


def run_webhooks(settings: Settings, group_id: str | None) -> RelayStats:
    """Relay until SIGINT/SIGTERM, finishing (for a while) and committing what is in flight."""
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    if settings.webhook_metrics_port:
        start_http_server(settings.webhook_metrics_port, settings.worker_host, registry=registry)

    async def main() -> RelayStats:
        assert settings.webhook_secret is not None
        async with client(settings) as http:
            deliverer = Deliverer(
                http, settings.webhook_url, Signer(settings.webhook_secret), settings, metrics=metrics
            )
            relay = WebhookRelay(settings, deliverer, metrics, group_id)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, relay.stop)
            log.info("webhooks: relaying %s to the configured URL", settings.triggers_topic)
            stats = await relay.run()
        log.info(
            "webhooks stopped: %d delivered, %d dead-lettered, %d malformed",
            stats.delivered,
            stats.dead,
            stats.malformed,
        )
        return stats

    return asyncio.run(main())
