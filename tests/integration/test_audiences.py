"""Audiences through the real worker: the API, the CLI and the gauges give the reference's users.

A synthetic history goes through Kafka and `lifecycle worker` into Redis once for the
module; every audience is then compared with `tests.reference.audience`, computed from
the same events by the definitions alone.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
from jsonschema import Draft202012Validator, FormatChecker
from kafka import KafkaConsumer

from service.api.app import create_api
from service.core.audience_events import audience_event_id
from service.core.durations import DAY_MS
from service.dev.generator import generate
from tests import reference as ref
from tests.stack import T0, Stack, history, make_stack, visit

pytestmark = pytest.mark.integration

FILTERS: list[dict[str, Any]] = [
    {},
    {"state": ["silent"], "entered_since": "7d"},
    {"state": ["dead"], "channel": "organic"},
    {"state": ["new", "retained"], "stage": "register", "not_stage": "first_order"},
    {"state": ["silent", "churned"], "entered_before": "5d"},
    {"segment": "general_recall"},
    {"segment": "important_value", "channel": "search"},
    {"state": ["churned", "dead"], "segment": "important_recall"},
    {"stage": "repurchase"},
]


@dataclass
class Settled:
    stack: Stack
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def settled(broker: Any, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settled]:
    """A history applied by a real worker, on keys of its own (this module never flushes Redis)."""
    stack = make_stack(broker, redis_server.url, tmp_path_factory.mktemp("audiences"))
    profile = stack.settings.loaded_profile
    events = list(generate(users=400, start_ms=T0, days=150, seed=7, profile=profile))  # some are dead
    stack.publish(events)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
    finally:
        worker.stop()
    yield Settled(stack, events)


@pytest.fixture
async def client(settled: Settled) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(settled.stack.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
        yield api


def _expected(settled: Settled, filters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    profile = settled.stack.settings.loaded_profile
    users = ref.reference(settled.events, profile)
    return ref.audience(users, max(e["ts"] for e in settled.events), profile, filters)


async def _walk(
    api: httpx.AsyncClient, path: str, params: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        page = await api.get(
            path, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        rows += body["users"]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows
    raise AssertionError("the walk did not end")


async def _lines(
    api: httpx.AsyncClient, path: str, params: dict[str, Any], **kw: Any
) -> list[dict[str, Any]]:
    reply = await api.get(path, params=params, **kw)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in reply.content.splitlines()]


async def test_audiences_equal_the_reference_paged_and_streamed(
    settled: Settled, client: httpx.AsyncClient
) -> None:
    seen_sizes = set()
    for filters in FILTERS:
        want = _expected(settled, filters)
        seen_sizes.add(len(want))
        rows = await _walk(client, "/audiences/users", filters, limit=37)
        assert len(rows) == len({r["user_id"] for r in rows}), f"a user twice: {filters}"
        assert {r["user_id"]: r for r in rows} == want, filters
        streamed = await _lines(client, "/audiences/users", {**filters, "format": "ndjson"})
        assert streamed == rows, f"NDJSON is the paged walk in the same order: {filters}"
        by_accept = await _lines(
            client, "/audiences/users", filters, headers={"Accept": "application/x-ndjson"}
        )
        assert by_accept == rows
    assert len(seen_sizes) > 3 and 0 not in {len(_expected(settled, f)) for f in FILTERS[:4]}, "a real test"


async def test_named_audiences_sizes_users_and_gauges(settled: Settled, client: httpx.AsyncClient) -> None:
    profile = settled.stack.settings.loaded_profile
    body = (await client.get("/audiences")).json()
    assert [a["name"] for a in body["audiences"]] == [a.name for a in profile.audiences]
    metrics = (await client.get("/metrics")).text
    for audience in body["audiences"]:
        want = _expected(settled, audience["filters"])
        assert audience["size"] == len(want), audience
        name = audience["name"]
        assert f'lifecycle_audience_users{{audience="{name}"}} {float(len(want))}' in metrics
        reply = await client.get(f"/audiences/{name}/users", params={"format": "ndjson"})
        assert reply.headers["content-disposition"] == f'attachment; filename="{name}.ndjson"'
        assert {orjson.loads(line)["user_id"] for line in reply.content.splitlines()} == set(want)
        assert {r["user_id"] for r in await _walk(client, f"/audiences/{name}/users", {}, 50)} == set(want)
    assert any(a["size"] for a in body["audiences"])
    missing = await client.get("/audiences/nobody/users")
    assert missing.status_code == 404 and "silent_this_week" in missing.json()["detail"]


async def test_bad_filters_are_422_and_bad_cursors_400_naming_the_parameter(
    client: httpx.AsyncClient,
) -> None:
    for params, named in (
        ({"state": "asleep"}, "state"),
        ({"stage": "checkout"}, "stage"),
        ({"segment": "vip"}, "segment"),
        ({"entered_since": "last week"}, "entered_since"),
    ):
        reply = await client.get("/audiences/users", params=params)
        assert reply.status_code == 422 and named in reply.text, (params, reply.text)
    assert (await client.get("/audiences/users", params={"limit": 1001})).status_code == 422
    assert (await client.get("/audiences/users", params={"channel": "a b"})).status_code == 422
    first = (await client.get("/audiences/users", params={"state": "dead", "limit": 1})).json()
    other = await client.get("/audiences/users", params={"state": "silent", "cursor": first["next_cursor"]})
    assert other.status_code == 400 and "other filters" in other.text
    garbage = await client.get("/audiences/users", params={"cursor": "garbage"})
    assert garbage.status_code == 400 and "cursor" in garbage.text


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "audience", *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        timeout=120,
        check=True,
    )


async def test_cli_exports_csv_and_json_lines(
    settled: Settled, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    import csv

    want = _expected(settled, {"state": ["silent"], "entered_since": "7d"})
    out = tmp_path / "silent.csv"
    done = _cli(settled.stack, "export", "--name", "silent_this_week", "--output", str(out))
    assert f"exported {len(want)} users of audience silent_this_week to {out}" in done.stdout.decode()
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["user_id"]: {k: v or None for k, v in r.items()} for r in rows} == want
    filters = {"state": ["dead"], "channel": "organic"}
    jsonl = _cli(settled.stack, "export", "--state", "dead", "--channel", "organic")
    assert [orjson.loads(line) for line in jsonl.stdout.splitlines()] == await _lines(
        client, "/audiences/users", {**filters, "format": "ndjson"}
    )
    assert {orjson.loads(line)["user_id"] for line in jsonl.stdout.splitlines()} == set(
        _expected(settled, filters)
    )
    assert b"exported" in jsonl.stderr, "the summary goes to stderr when the data goes to stdout"
    bad = subprocess.run(
        [sys.executable, "-m", "service.cli", "audience", "export", "--state", "asleep"],
        env={**os.environ, **settled.stack.env},
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode != 0 and b"state" in bad.stderr


def test_publish_twice_sends_the_same_ids(settled: Settled) -> None:
    topic = f"audiences-{settled.stack.settings.app_id}"
    want = _expected(settled, {"state": ["dead"]})
    for _ in range(2):
        done = _cli(
            settled.stack, "publish", "--name", "dead_for_login_recall", "--campaign", "c-1", "--topic", topic
        )
        assert f"published (campaign 'c-1') {len(want)} users" in done.stdout.decode()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settled.stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        messages = list(consumer)
    finally:
        consumer.close()
    assert len(messages) == 2 * len(want) > 0
    events = [orjson.loads(m.value) for m in messages]
    schema = json.loads((Path(__file__).parents[2] / "schemas/audience.schema.json").read_text())
    checker = Draft202012Validator(schema, format_checker=FormatChecker())
    ids: dict[str, set[str]] = {}
    for m, ce in zip(messages, events, strict=True):
        checker.validate(ce)
        # the CloudEvents SDK reads it in the Kafka binding's structured mode
        sdk = from_kafka_event(KafkaMessage(dict(m.headers), m.key, m.value))
        assert (sdk.get_id(), sdk.get_type(), sdk.get_subject()) == (ce["id"], ce["type"], ce["subject"])
        assert dict(m.headers)["content-type"] == b"application/cloudevents+json; charset=UTF-8"
        assert m.key.decode() == ce["subject"] == ce["data"]["user_id"]
        assert ce["type"] == "dev.userops.lifecycle.audience.v1" and ce["specversion"] == "1.0"
        assert ce["data"]["audience"] == "dead_for_login_recall" and ce["data"]["state"] == "dead"
        ids.setdefault(ce["subject"], set()).add(ce["id"])
    assert set(ids) == set(want)
    assert all(len(v) == 1 for v in ids.values()), "a re-run carries the same id per user"
    assert ids[next(iter(want))] == {audience_event_id("dead_for_login_recall", "c-1", next(iter(want)))}


async def test_pagination_while_events_arrive_returns_no_user_twice(
    broker: Any, redis_server: Any, tmp_path: Path
) -> None:
    stack = make_stack(broker, redis_server.url, tmp_path)
    events = history(300)
    stack.publish(events)
    worker = stack.worker()
    try:
        stack.wait_applied(worker)
        now = max(e["ts"] for e in events)
        users = sorted(ref.reference(events, stack.settings.loaded_profile))
        rng = random.Random(3)
        touched: set[str] = set()
        app = create_api(stack.settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            rows: list[dict[str, Any]] = []
            cursor = None
            page_no = 0
            while True:
                params: dict[str, Any] = {"limit": 15, **({"cursor": cursor} if cursor else {})}
                body = (await api.get("/audiences/users", params=params)).json()
                rows += body["users"]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
                page_no += 1
                # users come back (last_active jumps up), new users arrive, the clock moves
                batch = rng.sample(users, 8)
                touched.update(batch)
                fresh = [
                    visit(f"live-{page_no}-{i}", uid, now + page_no * 60_000 + i, channel="organic")
                    for i, uid in enumerate(batch)
                ]
                fresh.append(visit(f"new-{page_no}", f"newcomer-{page_no}", now + page_no * DAY_MS // 100))
                stack.publish(fresh)
                if page_no % 3 == 0:
                    stack.wait_applied(worker)
        ids = [r["user_id"] for r in rows]
        assert len(ids) == len(set(ids)), "no user twice in one walk"
        assert page_no > 10 and touched, "events arrived during the walk"
        assert set(users) - touched <= set(ids), "every user untouched during the walk was returned"
    finally:
        worker.stop()
