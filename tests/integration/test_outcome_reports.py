"""Delivery reports close the reminder funnel: a real worker fires a recall, a vendor's
report of it (SendGrid's Event Webhook, Mailgun's signed webhook) is posted to
`POST /v1/outcomes/{vendor}` with a write key, and `/triggers/summary` counts it as
delivered and clicked for that trigger."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.api.app import create_api
from service.core.durations import DAY_MS
from service.core.partitioning import partition_for
from service.core.triggers import in_holdout
from tests.faults.downstream import read_trigger_topic
from tests.stack import make_stack, visit, wait_async

pytestmark = pytest.mark.integration

WRITE_KEY = "wk-outcomes-0123"
API_KEY = "read-key-0123"
MAILGUN_KEY = "mailgun-signing-key"
T0 = 1_699_963_200_000  # 2023-11-14T12:00:00Z: the recall 3 days later falls outside quiet hours
HOUR = 3_600_000


def _basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _users(partitions: int) -> tuple[str, str, str]:
    """Two users who are not held out and a third that moves their partition's clock."""
    first = next(f"o{i}" for i in range(1000) if not in_holdout(f"o{i}", 10))
    p = partition_for(first, partitions)
    second = next(
        f"o{i}"
        for i in range(1000, 2000)
        if partition_for(f"o{i}", partitions) == p and not in_holdout(f"o{i}", 10)
    )
    ticker = next(f"tick{i}" for i in range(1000) if partition_for(f"tick{i}", partitions) == p)
    return first, second, ticker


def _mailgun(event: str, tid: str, uid: str, at_s: float, key: str) -> dict[str, Any]:
    timestamp, token = "1529006854", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "timestamp": at_s,
            "id": f"mg-{event}-{uid}",
            "user-variables": {"trigger_id": tid, "user_id": uid},
        },
    }


async def test_vendor_reports_fill_the_reminder_funnel(broker: Any, redis_url: str, tmp_path: Path) -> None:
    stack = make_stack(
        broker,
        redis_url,
        tmp_path,
        LIFECYCLE_WRITE_KEYS=f'["{WRITE_KEY}"]',
        LIFECYCLE_API_KEY=API_KEY,
        LIFECYCLE_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
    )
    s = stack.settings
    first, second, ticker = _users(s.partitions)
    read = {"x-api-key": API_KEY}
    worker = stack.worker()
    try:
        stack.publish([visit("v1", first, T0), visit("v2", second, T0), visit("t1", ticker, T0)])
        stack.publish([visit("t2", ticker, T0 + 3 * DAY_MS + HOUR)])  # both silent: recalled
        stack.wait_applied(worker)
        stack.wait_swept(worker)

        def recalls() -> dict[str, str]:
            on_topic = read_trigger_topic(s.kafka_bootstrap, s.triggers_topic, s.partitions)
            return {d.subject: d.id for d in on_topic if d.kind == "recall"}

        await wait_async(lambda: asyncio.to_thread(lambda: {first, second} <= set(recalls())), 60, "recalls")
        tids = recalls()
        fired_s = (T0 + 3 * DAY_MS) / 1000
        sendgrid = [
            {"event": "processed", "sg_event_id": "sg1", "timestamp": fired_s + 1, "trigger_id": tids[first],
             "user_id": first},
            {"event": "delivered", "sg_event_id": "sg2", "timestamp": fired_s + 60, "trigger_id": tids[first],
             "user_id": first},
            {"event": "click", "sg_event_id": "sg3", "timestamp": fired_s + 600, "trigger_id": tids[first],
             "user_id": first},
        ]  # fmt: skip
        app = create_api(s)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as api:
            body = orjson.dumps(sendgrid)
            assert (await api.post("/v1/outcomes/sendgrid", content=body)).status_code == 401
            r = await api.post("/v1/outcomes/sendgrid", content=body, headers={"x-api-key": API_KEY})
            assert r.status_code == 401  # the read key does not write
            r = await api.post("/v1/outcomes/sendgrid", content=body, headers=_basic(WRITE_KEY))
            assert r.status_code == 200 and r.json() == {"accepted": 2, "rejected": [], "skipped": 1}, r.text
            assert (await api.get("/lifecycle", headers=_basic(WRITE_KEY))).status_code == 403
            forged = _mailgun("delivered", tids[second], second, fired_s + 30, "not-the-key")
            r = await api.post(
                "/v1/outcomes/mailgun", content=orjson.dumps(forged), headers=_basic(WRITE_KEY)
            )
            assert r.status_code == 403
            for event, delay in (("delivered", 30), ("opened", 90), ("clicked", 120)):
                report = _mailgun(event, tids[second], second, fired_s + delay, MAILGUN_KEY)
                r = await api.post(
                    "/v1/outcomes/mailgun", content=orjson.dumps(report), headers=_basic(WRITE_KEY)
                )
                assert r.status_code == 200, r.text
            r = await api.post("/v1/outcomes/nobody", content=b"[]", headers=_basic(WRITE_KEY))
            assert r.status_code == 400

            async def counted() -> bool:
                summary = (await api.get("/triggers/summary", headers=read)).json()
                recall = {t["type"]: t for t in summary["triggers"]}["recall"]
                return bool(recall["outcomes"]["message_click"] == 2)

            await wait_async(counted, 60, "the outcomes to be counted")
            summary = (await api.get("/triggers/summary", headers=read)).json()
            recall = {t["type"]: t for t in summary["triggers"]}["recall"]
            assert recall["outcomes"]["message_delivered"] == 2
            assert recall["outcomes"]["message_click"] == 2
            assert recall["click_through_rate"] == 1.0
            fired = (await api.get(f"/users/{first}/triggers", headers=read)).json()["fired"]
            assert {"message_delivered", "message_click"} <= set(
                next(f for f in fired if f["id"] == tids[first])["outcomes"]
            )
    finally:
        worker.stop()
