"""`lifecycle webhooks` as an operator runs it: a real worker fires triggers from a generated
history, the relay process POSTs them to a real HTTP receiver that verifies every request
with the `standardwebhooks` package and fails a share of first attempts, and the relay is
killed with SIGKILL halfway. Every trigger on the topic is delivered at least once, in
order per user, or dead-lettered with its status; the group's offsets reach the end."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.dev.processes import free_port
from tests.faults.downstream import read_trigger_topic
from tests.faults.history import outbox_length
from tests.processes import ServiceProcess, wait_for
from tests.stack import history, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SECRET = "whsec_" + base64.b64encode(b"relay-test-secret-32-bytes-long!").decode()


def _roll(tid: str) -> int:
    """A stable number in 0..99 per trigger id: which ones the receiver refuses or fails."""
    return int(hashlib.sha256(tid.encode()).hexdigest()[:8], 16) % 100


class Receiver:
    """A webhook receiver on loopback: verifies, refuses 2% (422), fails some first attempts."""

    def __init__(self) -> None:
        self.verifier = Webhook(SECRET)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = defaultdict(int)
        self.delivered: list[tuple[str, str]] = []  # (subject, id) in the order answered 2xx
        self.unverified = 0
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, headers = receiver.answer(body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        try:
            event = self.verifier.verify(body, headers)
        except WebhookVerificationError:
            with self.lock:
                self.unverified += 1
            return 401, {}
        tid = event["id"]
        roll = _roll(tid)
        with self.lock:
            self.attempts[tid] += 1
            first = self.attempts[tid] == 1
            self.content_types.add(headers.get("content-type", ""))
        if roll < 2:
            return 422, {}
        if first and roll < 15:
            return 500, {}
        if first and roll < 25:
            return 429, {"Retry-After": "0"}
        if first and roll < 30:
            time.sleep(1.5)  # past the relay's timeout: it has given up on this attempt
            return 503, {}
        with self.lock:
            self.delivered.append((event["subject"], tid))
        return 204, {}

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def committed_to_end(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    """Whether `group` committed each partition of `topic` up to `ends` (its last offset + 1,
    read from the topic itself: Tansu's end offset can lag it)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return all(consumer.committed(TopicPartition(topic, p)) == end for p, end in ends.items())
    finally:
        consumer.close()


def dead_letters(bootstrap: str, topic: str) -> dict[str, dict[str, str]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return {orjson.loads(m.value)["id"]: {k: v.decode() for k, v in m.headers} for m in consumer}
    finally:
        consumer.close()


def test_every_trigger_reaches_the_receiver_signed_in_order_per_user_across_a_kill(
    broker: Any, redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    metrics_port = free_port()
    stack = make_stack(
        broker,
        redis_url,
        tmp_path,
        LIFECYCLE_WEBHOOK_URL=receiver.url,
        LIFECYCLE_WEBHOOK_SECRET=SECRET,
        LIFECYCLE_WEBHOOK_TIMEOUT="1.0",
        LIFECYCLE_WEBHOOK_BACKOFF_BASE="0.02",
        LIFECYCLE_WEBHOOK_BACKOFF_CAP="0.2",
        LIFECYCLE_WEBHOOK_MAX_ATTEMPTS="6",
        LIFECYCLE_WEBHOOK_CONCURRENCY="8",
        LIFECYCLE_WEBHOOK_METRICS_PORT=str(metrics_port),
        LIFECYCLE_WEBHOOK_DLQ_TOPIC=f"hooks-{uuid.uuid4().hex[:8]}.dlq",
    )
    s = stack.settings
    worker = stack.worker()
    relay = ServiceProcess("webhooks", stack.env, tmp_path / "webhooks.log").start()
    unscraped = {**stack.env, "LIFECYCLE_WEBHOOK_METRICS_PORT": "0"}  # one port per process
    second = ServiceProcess("webhooks", unscraped, tmp_path / "webhooks3.log")
    try:
        events = history(users=200)
        half = len(events) // 2
        stack.publish(events[:half])
        wait_for(lambda: len(receiver.delivered) >= 40, 180, "the first deliveries", relay)
        relay.kill()  # mid-stream: whatever it had not committed comes again
        killed_at = len(receiver.delivered)
        stack.publish(events[half:])  # the stream goes on while no relay runs
        # two relays now share the partitions: the second one's joining moves some of them
        relay = ServiceProcess("webhooks", stack.env, tmp_path / "webhooks2.log").start()
        second.start()
        stack.wait_applied(worker, 180)
        stack.wait_swept(worker, 120)
        wait_for(lambda: outbox_length(stack) == 0, 120, "the outbox to be relayed", worker)
        on_topic = read_trigger_topic(s.kafka_bootstrap, s.triggers_topic, s.partitions)
        group = f"{s.app_id}-webhooks"
        ends: dict[int, int] = {}
        for d in on_topic:
            ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)
        wait_for(
            lambda: committed_to_end(s.kafka_bootstrap, group, s.triggers_topic, ends),
            180,
            "the relay to commit every trigger",
            relay,
        )
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        for r in (relay, second):
            r.stop()
            assert r.proc is not None and r.proc.returncode == 0, r.log_tail()
    finally:
        relay.stop()
        second.stop()
        worker.stop()

    ids = [d.id for d in on_topic]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)
    refused = {tid for tid in ids if _roll(tid) < 2}
    assert receiver.unverified == 0
    assert receiver.content_types == {"application/cloudevents+json; charset=UTF-8"}
    delivered_ids = {tid for _, tid in receiver.delivered}
    assert delivered_ids == set(ids) - refused  # nothing lost, nothing refused delivered
    assert 0 < killed_at < len(receiver.delivered)
    # one user's triggers in the order of the topic (the first 2xx of each; a redelivery after
    # the kill may repeat some)
    first_seen: dict[str, list[str]] = defaultdict(list)
    done: set[str] = set()
    for subject, tid in receiver.delivered:
        if tid not in done:
            done.add(tid)
            first_seen[subject].append(tid)
    by_user: dict[str, list[str]] = defaultdict(list)
    for d in sorted(on_topic, key=lambda d: (d.partition, d.offset)):
        if d.id not in refused:
            by_user[d.subject].append(d.id)
    assert dict(first_seen) == dict(by_user)
    assert any(n > 1 for n in receiver.attempts.values())  # retried after 500, 429 and timeouts
    dead = dead_letters(s.kafka_bootstrap, s.webhook_dlq_topic)
    assert refused and set(dead) == refused
    for headers in dead.values():
        assert headers["x-webhook-status"] == "422"
        assert int(headers["x-webhook-attempts"]) >= 1  # a slow first answer may have timed out
        assert headers["x-source-topic"] == s.triggers_topic
    assert 'lifecycle_webhook_deliveries_total{result="delivered"}' in scraped
    assert 'lifecycle_webhook_attempts_total{status_class="5xx"}' in scraped
