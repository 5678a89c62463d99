"""A stand-in messaging tool for `lifecycle dev`: the loop out and back, with real parts.

`lifecycle webhooks` POSTs each trigger here, signed; this receiver verifies it with the
`standardwebhooks` package, "sends" the message (held-out triggers are not sent: that is
the control group), and reports back as SendGrid's Event Webhook would, to the API's
`POST /v1/outcomes/sendgrid` with a write key: most messages delivered, some clicked.
Outcomes are decided by the trigger id, so a redelivered webhook reports the same ones
(and the reports' ids de-duplicate them anyway).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = logging.getLogger(__name__)

DELIVERED_PERCENT = 92
CLICKED_PERCENT = 30  # of the delivered
MAX_PENDING = 100_000  # reports waiting to be posted; beyond that the demo drops them


def _percentile(tid: str, salt: str) -> int:
    return int(hashlib.sha256(f"{salt}|{tid}".encode()).hexdigest()[:8], 16) % 100


class DemoVendor:
    def __init__(self, secret: str, api_url: str, write_key: str) -> None:
        self._verifier = Webhook(secret)
        self._outcomes_url = f"{api_url}/v1/outcomes/sendgrid"
        self._auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._stop = threading.Event()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("content-length") or 0), 1 << 20)
                status = vendor.receive(
                    self.rfile.read(length), {k.lower(): v for k, v in self.headers.items()}
                )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/messages"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._report_loop, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            event = self._verifier.verify(body, headers)
        except WebhookVerificationError:
            return 401
        data = event.get("data") or {}
        if data.get("holdout"):
            return 204  # the control group is never contacted
        tid, uid = event["id"], event["subject"]
        sent_s = datetime.fromisoformat(event["time"]).timestamp()
        reports = []
        if _percentile(tid, "delivered") < DELIVERED_PERCENT:
            reports.append(self._report("delivered", tid, uid, sent_s + 20))
            if _percentile(tid, "click") < CLICKED_PERCENT:
                reports.append(self._report("click", tid, uid, sent_s + 1800))
        with self._lock:
            if len(self._pending) < MAX_PENDING:
                self._pending += reports
        return 204

    @staticmethod
    def _report(kind: str, tid: str, uid: str, at_s: float) -> dict[str, Any]:
        return {
            "event": kind,
            "sg_event_id": f"{tid}-{kind}",
            "timestamp": int(at_s),
            "trigger_id": tid,
            "user_id": uid,
        }

    def _report_loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                batch, self._pending = self._pending[:1000], self._pending[1000:]
            if not batch:
                continue
            request = urllib.request.Request(
                self._outcomes_url,
                data=orjson.dumps(batch),
                headers={"content-type": "application/json", "authorization": self._auth},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10):
                    pass
            except OSError as exc:  # the API is starting or stopping: report these again later
                log.warning("demo vendor: reports not taken yet (%s)", exc)
                with self._lock:
                    self._pending = batch + self._pending

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
