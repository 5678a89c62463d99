"""Credentials and TLS for Redis and Kafka, for real: redis-server with a password and with
TLS, Apache Kafka with SASL/PLAIN and with TLS listeners; secrets never in a repr or a log.

Certificates are made here by `openssl` (a throwaway CA and a server certificate for
127.0.0.1). The Kafka test starts its own Apache Kafka with three listeners: PLAINTEXT
(only for the fixture's readiness probe), SASL_PLAINTEXT and SSL; the service is pointed
at one of the secured ones and must do everything through it: create topics, publish,
consume (Faust), dead-letter, relay triggers (the relay's tail reader), collect over HTTP
(aiokafka producer), bridge (aiokafka consumer and producer), and answer /readyz.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from service.api.app import create_api
from service.dev.kafka_broker import KafkaBroker
from service.dev.processes import free_port
from service.dev.redis_server import RedisServer, TlsFiles
from service.kafka.options import kafka_python_options
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from service.settings import Settings
from tests import reference as ref
from tests.processes import ServiceProcess
from tests.stack import T0, Stack, assert_matches_reference, history, make_stack, visit

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "r3dis-Secret-pw"
SASL_USER, SASL_PASSWORD = "lifecycle", "k4fka-Secret-pw"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 (PKCS#8 key, PEM)."""
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=lifecycle test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return TlsFiles(cert=d / "server.pem", key=d / "server.key", ca=d / "ca.pem")


def test_settings_never_show_secrets() -> None:
    s = Settings(
        redis_url=f"rediss://default:{REDIS_PASSWORD}@redis.example:6380/0",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
        api_key=SecretStr("api-Secret-key"),
    )
    for text in (repr(s), str(s)):
        assert REDIS_PASSWORD not in text and SASL_PASSWORD not in text and "api-Secret-key" not in text
        assert "rediss://default:**********@redis.example:6380/0" in text
    assert s.redis_url.endswith(f"{REDIS_PASSWORD}@redis.example:6380/0")  # the value itself is intact


async def test_request_sizes_are_bounded(broker: Any, redis_url: str) -> None:
    """A chunked upload (no Content-Length) is cut off at the limit, not read into memory;
    ids and query parameters have their documented bounds."""
    s = Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_url, collector_max_bytes=4096)
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        yield b"["
        while sent < 50 << 20:  # would be 50 MB
            sent += 1024
            yield b" " * 1024

    async with httpx.AsyncClient(transport=httpx.ASGITransport(create_api(s)), base_url="http://a") as api:
        response = await api.post("/v1/events", content=endless())
        assert response.status_code == 413
        assert sent < 1 << 20  # stopped reading long before the end
        assert (await api.get("/users/" + "u" * 129)).status_code == 422
        assert (await api.get("/lifecycle", params={"channel": "c" * 65})).status_code == 422
        assert (await api.get("/retention", params={"cohort": "2024-01-01" * 100})).status_code == 422
        assert (
            await api.get("/lifecycle/what-if", params={"silent_after": "1" * 17 + "d"})
        ).status_code == 422
        assert (await api.get("/lifecycle?channel=a&channel=b")).status_code == 422


async def _wait_total(
    api: httpx.AsyncClient, users: int, worker: ServiceProcess, timeout: float = 120
) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log_tail()
        response = await api.get("/lifecycle")
        if response.status_code == 200 and response.json()["total"] == users:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {users} users\n{worker.log_tail()}")


async def _run_and_check(stack: Stack, secrets: tuple[str, ...]) -> None:
    """The worker applies a history sent through the stack's (secured) settings, exactly."""
    events = history(users=60)
    worker = stack.worker()
    try:
        stack.publish(events)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(stack.settings)), base_url="http://api"
        ) as api:
            assert (await api.get("/readyz")).status_code == 200
            await _wait_total(api, len(ref.reference(events, stack.settings.loaded_profile)), worker)
            await assert_matches_reference(api, events, stack.settings.loaded_profile)
    finally:
        worker.stop()
    log = (stack.workdir / "worker.log").read_text(errors="replace")
    assert "Starting" in log or "INFO" in log
    for secret in secrets:
        assert secret not in log


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis-auth", password=REDIS_PASSWORD) as server:
        yield server


async def test_redis_with_a_password(broker: Any, redis_with_password: RedisServer, tmp_path: Path) -> None:
    url = redis_with_password.url
    assert REDIS_PASSWORD in url
    await _run_and_check(make_stack(broker, url, tmp_path), (REDIS_PASSWORD,))
    wrong = Settings(kafka_bootstrap=broker.bootstrap, redis_url=url.replace(f":{REDIS_PASSWORD}@", ""))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(wrong)), base_url="http://a"
    ) as api:
        ready = await api.get("/readyz")
        assert ready.status_code == 503
        assert "auth" in ready.json()["checks"]["redis"].lower()


async def test_redis_over_tls(broker: Any, certs: TlsFiles, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis-tls", tls=certs, password=REDIS_PASSWORD) as server:
        assert server.url.startswith("rediss://")
        stack = make_stack(broker, server.url, tmp_path, LIFECYCLE_REDIS_TLS_CA_FILE=str(certs.ca))
        await _run_and_check(stack, (REDIS_PASSWORD,))
        # Without the CA the server's certificate does not verify: not ready, never plaintext.
        untrusted = Settings(kafka_bootstrap=broker.bootstrap, redis_url=server.url)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(untrusted)), base_url="http://a"
        ) as api:
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert "certificate" in ready.json()["checks"]["redis"].lower()


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory, certs: TlsFiles) -> Iterator[dict[str, str]]:
    """Apache Kafka with SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256) and SSL listeners; yields
    their bootstraps."""
    workdir = tmp_path_factory.mktemp("kafka-secured")
    keystore = workdir / "server-keystore.pem"  # Kafka's PEM keystore: the key, then the chain
    keystore.write_text(certs.key.read_text() + certs.cert.read_text())
    sasl_port, ssl_port, sasl_ssl_port = free_port(), free_port(), free_port()
    scram = f"SCRAM-SHA-256=[name={SASL_USER},password={SASL_PASSWORD}]"
    broker = KafkaBroker(workdir, extra_properties={}, format_args=["--add-scram", scram])
    plain, controller = f"127.0.0.1:{broker.port}", f"127.0.0.1:{broker.controller_port}"
    listeners = (
        f"PLAINTEXT://{plain},CONTROLLER://{controller},"
        f"SASL_PLAINTEXT://127.0.0.1:{sasl_port},SSL://127.0.0.1:{ssl_port},"
        f"SASL_SSL://127.0.0.1:{sasl_ssl_port}"
    )
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{SASL_USER}="{SASL_PASSWORD}";'
    )
    broker.extra_properties.update(
        {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,"
                "SASL_SSL:SASL_SSL"
            ),
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": str(keystore),
            "listener.name.ssl.ssl.client.auth": "none",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        }
    )
    with broker:
        yield {
            "sasl": f"127.0.0.1:{sasl_port}",
            "ssl": f"127.0.0.1:{ssl_port}",
            "sasl_ssl": f"127.0.0.1:{sasl_ssl_port}",
        }


def _security_env(kind: str, bootstrap: str, certs: TlsFiles) -> dict[str, str]:
    if kind in ("plain", "scram"):
        return {
            "LIFECYCLE_KAFKA_BOOTSTRAP": bootstrap,
            "LIFECYCLE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LIFECYCLE_KAFKA_SASL_MECHANISM": "PLAIN" if kind == "plain" else "SCRAM-SHA-256",
            "LIFECYCLE_KAFKA_SASL_USERNAME": SASL_USER,
            "LIFECYCLE_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        }
    tls = {"LIFECYCLE_KAFKA_BOOTSTRAP": bootstrap, "LIFECYCLE_KAFKA_SSL_CAFILE": str(certs.ca)}
    if kind == "sasl_ssl":
        return {
            **tls,
            "LIFECYCLE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LIFECYCLE_KAFKA_SASL_USERNAME": SASL_USER,
            "LIFECYCLE_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        }
    return {**tls, "LIFECYCLE_KAFKA_SECURITY_PROTOCOL": "SSL"}


def _read_topic(settings: Settings, topic: str, partitions: int) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        **kafka_python_options(settings),
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        return list(consumer)
    finally:
        consumer.close()


@pytest.mark.parametrize("kind", ["plain", "scram", "ssl", "sasl_ssl"])
async def test_kafka_with_sasl_and_with_tls(
    kind: str, secured_kafka: dict[str, str], certs: TlsFiles, redis_url: str, tmp_path: Path
) -> None:
    class Secured:
        bootstrap = secured_kafka[kind if kind in ("ssl", "sasl_ssl") else "sasl"]

    stack = make_stack(Secured(), redis_url, tmp_path, **_security_env(kind, Secured.bootstrap, certs))
    s = stack.settings
    assert s.kafka_security_protocol != "PLAINTEXT"
    # Published with kafka-python, consumed by Faust, relayed (triggers) and dead-lettered.
    await _run_and_check(stack, (SASL_PASSWORD,))
    worker = stack.worker()
    bridge = None
    try:
        stack.publish([visit("bad-1", "u-bad", T0) | {"type": "not\ta type"}])  # a control character: no type
        letters = _wait_for_messages(s, s.dlq_topic, 1, worker)
        assert dict(letters[0].headers)["x-error-reason"]
        assert _wait_for_messages(s, s.triggers_topic, 1, worker)  # the relay and its tail reader
        # The collector's aiokafka producer.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(s)), base_url="http://a"
        ) as api:
            response = await api.post("/v1/events", content=orjson.dumps([visit("c-1", "u-collected", T0)]))
            assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
            # The bridge's aiokafka consumer and producer.
            source = f"{s.events_topic}.source"
            create_topics(s.kafka_bootstrap, {source: s.partitions}, **kafka_python_options(s))
            with EventPublisher(
                s.kafka_bootstrap, source, s.partitions, single=True, **kafka_python_options(s)
            ) as pub:
                pub.publish([visit("b-1", "u-bridged", T0)])
                pub.flush()
            bridge = ServiceProcess("bridge", stack.env, tmp_path / "bridge.log", ["--from", source]).start()
            for uid in ("u-collected", "u-bridged"):
                await _wait_user(api, uid, worker)
        # Wrong credentials: not ready, with the reason.
        if kind in ("plain", "scram"):
            wrong = Settings(**{**_settings_kwargs(stack), "kafka_sasl_password": SecretStr("wrong")})
        else:
            wrong = Settings(**{**_settings_kwargs(stack), "kafka_ssl_cafile": ""})
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_api(wrong)), base_url="http://a"
        ) as api:
            assert (await api.get("/readyz")).status_code == 503
    finally:
        if bridge:
            bridge.stop()
        worker.stop()
    for path in (tmp_path / "worker.log", tmp_path / "bridge.log"):
        assert SASL_PASSWORD not in path.read_text(errors="replace")


def _settings_kwargs(stack: Stack) -> dict[str, Any]:
    return {k.removeprefix("LIFECYCLE_").lower(): v for k, v in stack.env.items()}


def _wait_for_messages(settings: Settings, topic: str, count: int, worker: ServiceProcess) -> list[Any]:
    from tests.processes import wait_for

    return wait_for(
        lambda: (got := _read_topic(settings, topic, settings.partitions)) and len(got) >= count and got,
        60,
        f"{count} message(s) on {topic}",
        worker,
    )


async def _wait_user(api: httpx.AsyncClient, uid: str, worker: ServiceProcess) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (await api.get(f"/users/{uid}")).status_code == 200:
            return
        assert worker.alive(), worker.log_tail()
        await asyncio.sleep(0.3)
    raise AssertionError(f"{uid} was never applied\n{worker.log_tail()}")
