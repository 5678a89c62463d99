"""What a command says when Kafka or Redis cannot be reached: one line, exit 1.

A first-time user with a wrong address should not read 30 seconds of client-library
retries and a traceback. Commands check their services up front, each within a few
seconds, and name the setting to look at; errors that still happen later are turned
into the same kind of line. `--verbose` gives the client libraries' messages and the
traceback back.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import NoReturn

from service.settings import Settings, mask_url

CHATTY_LOGGERS = ("kafka", "aiokafka", "redis")
CONNECT_TIMEOUT_S = 5.0


class Unreachable(Exception):
    """Kafka or Redis cannot be reached; the message is the one line to print."""


def quiet_client_libraries(verbose: bool) -> None:
    """Client libraries log every failed connection attempt; only `--verbose` shows them."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


def kafka_unreachable(settings: Settings, reason: object) -> Unreachable:
    return Unreachable(
        f"lifecycle: cannot reach Kafka at {settings.kafka_bootstrap} (LIFECYCLE_KAFKA_BOOTSTRAP): "
        f"{_short(reason)}; check that the brokers run, the host:port list, and the "
        "LIFECYCLE_KAFKA_SECURITY_PROTOCOL and SASL settings"
    )


def redis_unreachable(settings: Settings, reason: object) -> Unreachable:
    return Unreachable(
        f"lifecycle: cannot reach Redis at {mask_url(settings.redis_url)} (LIFECYCLE_REDIS_URL): "
        f"{_short(reason)}; check that redis-server runs, the URL's host, port and password, "
        "and LIFECYCLE_REDIS_CLUSTER / LIFECYCLE_REDIS_TLS_CA_FILE"
    )


def check_kafka(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise `Unreachable` unless a broker answers a metadata request within `timeout_s`."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from service.kafka.options import kafka_python_options

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            client_id="lifecycle-check",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000),
            **kafka_python_options(settings),
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise kafka_unreachable(settings, exc) from None
    admin.close()


def check_redis(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise `Unreachable` unless Redis answers PING within `timeout_s`."""
    from redis.exceptions import RedisError

    from service.storage.client import redis_client

    async def ping() -> None:
        client = redis_client(settings, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            await asyncio.wait_for(client.ping(), timeout_s * 2)
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError, TimeoutError, ValueError) as exc:
        raise redis_unreachable(settings, exc) from None


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def _short(reason: object) -> str:
    text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    return text.splitlines()[0][:200] if text else "no answer"
