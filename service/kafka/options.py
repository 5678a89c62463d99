"""One place that turns the settings into Kafka connection options, for every client library.

The service talks to Kafka through three libraries: Faust (the worker), aiokafka (bridge,
collector, relay tail, readiness probe) and kafka-python (publisher, replay, generate,
topic creation). Each spells TLS and SASL differently; the `LIFECYCLE_KAFKA_*` security
settings are translated here so that no client is ever created without them.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from service.settings import Settings


def _uses_ssl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _password(settings: Settings) -> str:
    secret = settings.kafka_sasl_password
    return secret.get_secret_value() if secret is not None else ""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context for the brokers (client certificate included if configured)."""
    if not _uses_ssl(settings):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaClient`."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if _uses_ssl(settings):
        options["ssl_context"] = ssl_context(settings)
    if _uses_sasl(settings):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _password(settings)
    return options


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's `KafkaProducer`, `KafkaConsumer` and `KafkaAdminClient`
    (without `bootstrap_servers`, which its callers pass themselves)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _uses_ssl(settings):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        for name in ("cafile", "certfile", "keyfile"):
            value = getattr(settings, f"kafka_ssl_{name}")
            if value:
                options[f"ssl_{name}"] = value
    if _uses_sasl(settings):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _password(settings)
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """`broker_credentials` of the Faust app; Faust applies them to its consumer and producer."""
    if _uses_sasl(settings):
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    if _uses_ssl(settings):
        return SSLCredentials(ssl_context(settings))
    return None
