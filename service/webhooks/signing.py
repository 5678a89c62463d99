"""One trigger CloudEvent as a signed webhook request (CloudEvents HTTP structured mode).

The body is the Kafka message's value unchanged, so the receiver sees the exact event
the topic holds. Signatures follow the Standard Webhooks spec: `webhook-id` is the
CloudEvent id (a redelivery carries the same id, so receivers de-duplicate on it),
`webhook-timestamp` the signing time, `webhook-signature` the HMAC over both and the body.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from service.core.cloudevents import STRUCTURED_CONTENT_TYPE

CONTENT_TYPE = STRUCTURED_CONTENT_TYPE.decode()


class Signer:
    """Signs bodies with the `whsec_` secret; the secret itself is never kept in a repr."""

    __slots__ = ("_webhook",)

    def __init__(self, secret: SecretStr) -> None:
        self._webhook = Webhook(secret.get_secret_value())

    def __repr__(self) -> str:
        return "Signer(**********)"

    def headers(self, event_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        at = (now or datetime.now(UTC)).replace(microsecond=0)
        return {
            "content-type": CONTENT_TYPE,
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._webhook.sign(event_id, at, body),
        }
