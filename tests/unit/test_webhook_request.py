"""Signed webhook requests verify with the Standard Webhooks reference verifier."""

from __future__ import annotations

import base64

import orjson
import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.signing import Signer

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_signed_request_verifies_and_tampering_does_not() -> None:
    body = orjson.dumps({"specversion": "1.0", "id": "trg-1", "subject": "u1"})
    headers = Signer(SecretStr(SECRET)).headers("trg-1", body)
    assert headers["content-type"] == "application/cloudevents+json; charset=UTF-8"
    assert Webhook(SECRET).verify(body, headers) == orjson.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, {**headers, "webhook-id": "trg-2"})


def test_secret_stays_out_of_repr() -> None:
    assert "whsec" not in repr(Signer(SecretStr(SECRET)))
