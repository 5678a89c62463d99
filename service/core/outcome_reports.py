"""Messaging vendors' delivery reports turned into canonical outcome events.

A trigger reaches a messaging tool as a CloudEvent whose `id` is the trigger id and whose
`subject` is the user id. The tool sends the message with those two as its own metadata
(SendGrid `custom_args`, Mailgun `user-variables`, any field for the generic mapping), and
its delivery reports carry them back. Each report becomes an event of the user, of an
outcome type (`message_delivered`, `message_click`, `payment_click`, `paid`) with
`properties.trigger_id`, which attributes it to the trigger in the reminder funnel.

Pure: the body is already decoded, the receipt time is passed in. A report of a kind the
funnel does not count (processed, deferred, bounce, open, ...) is skipped, not an error:
the vendor must not retry it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

OUTCOME_TYPES = ("message_delivered", "message_click", "payment_click", "paid")
MAX_REPORTS = 1000  # reports in one request
MAX_FIELD_PATH = 8  # dots in a generic mapping's field path
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_FIELD_PATH = re.compile(r"[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,8}")  # at most MAX_FIELD_PATH dots

# The vendors' documented event names onto outcome types; any other name is skipped.
SENDGRID_TYPES: Mapping[str, str] = {"delivered": "message_delivered", "click": "message_click"}
MAILGUN_TYPES: Mapping[str, str] = {"delivered": "message_delivered", "clicked": "message_click"}


@dataclass(frozen=True, slots=True)
class GenericReports:
    """A profile's mapping of one vendor's reports: where each field is (dotted paths)."""

    type: str
    id: str
    user_id: str
    trigger_id: str
    ts: str | None = None
    items: str | None = None  # the list of reports in the body; None: the body is a list or one report
    types: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Mapped:
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {index, reason}
    skipped: int = 0


class ReportError(ValueError):
    """A body that holds no reports at all (the whole request is refused)."""


def mailgun_signature_ok(doc: Any, signing_key: bytes) -> bool:
    """Mailgun's documented check: HMAC-SHA256 of `timestamp + token` under the signing key."""
    sig = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(sig, dict):
        return False
    timestamp, token, given = sig.get("timestamp"), sig.get("token"), sig.get("signature")
    if not all(isinstance(x, str) and 0 < len(x) <= 256 for x in (timestamp, token, given)):
        return False
    expected = hmac.new(signing_key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(given))


def map_reports(
    vendor: str, doc: Any, *, received_ms: int, generic: Mapping[str, GenericReports] | None = None
) -> Mapped:
    """The outcome events in one vendor request (SendGrid, Mailgun, or a profile's mapping)."""
    if vendor == "sendgrid":
        return _each(_as_list(doc), received_ms, "sendgrid", _sendgrid, SENDGRID_TYPES)
    if vendor == "mailgun":
        if not isinstance(doc, dict) or not isinstance(doc.get("event-data"), dict):
            raise ReportError("a Mailgun report is an object with `event-data`")
        return _each([doc["event-data"]], received_ms, "mailgun", _mailgun, MAILGUN_TYPES)
    spec = (generic or {}).get(vendor)
    if spec is None:
        raise ReportError(f"unknown vendor {vendor[:40]!r}: sendgrid, mailgun, or one the profile maps")
    items = _path(doc, spec.items) if spec.items else doc
    return _each(_as_list(items), received_ms, vendor, lambda raw: _generic(raw, spec), spec.types)


def _as_list(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        reports = doc
    elif isinstance(doc, dict):
        reports = [doc]
    else:
        raise ReportError("reports must be a JSON array or object")
    if not reports:
        raise ReportError("no reports in the body")
    if len(reports) > MAX_REPORTS:
        raise ReportError(f"{len(reports)} reports in one request; at most {MAX_REPORTS}")
    return reports


class Report(NamedTuple):
    """One vendor report's fields, read where that vendor puts them."""

    name: Any  # the vendor's event name ("delivered", "click", ...)
    id: Any
    user_id: Any
    trigger_id: Any
    ts: int | str | None


def _each(
    reports: list[Any],
    received_ms: int,
    vendor: str,
    read: Callable[[dict[str, Any]], Report],
    types: Mapping[str, str],
) -> Mapped:
    out = Mapped()
    for i, raw in enumerate(reports):
        if not isinstance(raw, dict):
            out.rejected.append({"index": i, "reason": "a report must be a JSON object"})
            continue
        report = read(raw)
        etype = types.get(report.name) if isinstance(report.name, str) else None
        if etype is None:
            out.skipped += 1  # a kind of report the reminder funnel does not count
            continue
        made = _event(vendor, etype, report, received_ms)
        if isinstance(made, str):
            out.rejected.append({"index": i, "reason": made})
        else:
            out.events.append(made)
    return out


def _sendgrid(raw: dict[str, Any]) -> Report:
    # custom_args come back as top-level fields of each event
    return Report(
        raw.get("event"), raw.get("sg_event_id"), raw.get("user_id"), raw.get("trigger_id"),
        _seconds(raw.get("timestamp")),
    )  # fmt: skip


def _mailgun(raw: dict[str, Any]) -> Report:
    variables = raw.get("user-variables")
    variables = variables if isinstance(variables, dict) else {}
    return Report(
        raw.get("event"), raw.get("id"), variables.get("user_id"), variables.get("trigger_id"),
        _seconds(raw.get("timestamp")),
    )  # fmt: skip


def _generic(raw: dict[str, Any], spec: GenericReports) -> Report:
    ts = _path(raw, spec.ts) if spec.ts else None
    return Report(
        _path(raw, spec.type), _path(raw, spec.id), _path(raw, spec.user_id), _path(raw, spec.trigger_id),
        ts if isinstance(ts, str) else _seconds_or_ms(ts),
    )  # fmt: skip


def _event(vendor: str, etype: str, report: Report, received_ms: int) -> dict[str, Any] | str:
    vid, user, trigger = report.id, report.user_id, report.trigger_id
    if isinstance(vid, int) and not isinstance(vid, bool):
        vid = str(vid)
    if not isinstance(vid, str) or not _ID.fullmatch(vid):
        return "the report has no id (1..128 printable characters)"
    if not isinstance(user, str) or not _ID.fullmatch(user):
        return "the report carries no user_id: send the trigger's subject as the message's user_id"
    if not isinstance(trigger, str) or not _ID.fullmatch(trigger):
        return "the report carries no trigger_id: send the trigger's id as the message's trigger_id"
    event_id = f"{vendor}:{vid}"
    if len(event_id) > 128:
        event_id = f"{vendor}:{hashlib.sha256(vid.encode()).hexdigest()[:32]}"
    return {
        "event_id": event_id,
        "user_id": user,
        "type": etype,
        "ts": report.ts if report.ts is not None else received_ms,
        "properties": {"trigger_id": trigger, "vendor": vendor, "report": str(report.name)[:64]},
    }


def _seconds(value: Any) -> int | None:
    """Unix seconds (int or float, as the vendors send) in epoch ms; None when absent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value * 1000)


def _seconds_or_ms(value: Any) -> int | None:
    """A number that is seconds below 10^11 (year 5138), else already ms."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value * 1000) if abs(value) < 1e11 else int(value)


def _path(doc: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def parse_generic(value: Any, source: str) -> dict[str, GenericReports]:
    """The profile's `outcome_reports`: vendor name -> where its fields are. Raises ValueError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > 32:
        raise ValueError(f"{source}: outcome_reports: expected a mapping of at most 32 vendors")
    out: dict[str, GenericReports] = {}
    for vendor, spec in value.items():
        where = f"{source}: outcome_reports.{vendor}"
        if not isinstance(vendor, str) or not re.fullmatch(r"[a-z0-9_\-]{1,32}", vendor):
            raise ValueError(f"{where}: a vendor name is 1..32 of a-z, 0-9, _ and -")
        if vendor in ("sendgrid", "mailgun"):
            raise ValueError(f"{where}: {vendor} is built in")
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        unknown = set(spec) - {"type", "id", "user_id", "trigger_id", "ts", "items", "types"}
        if unknown:
            raise ValueError(f"{where}.{sorted(map(str, unknown))[0]}: unknown field")
        paths: dict[str, str | None] = {}
        for key in ("type", "id", "user_id", "trigger_id", "ts", "items"):
            path = spec.get(key)
            required = key in ("type", "id", "user_id", "trigger_id")
            if path is None and not required:
                paths[key] = None
                continue
            if not isinstance(path, str) or not _FIELD_PATH.fullmatch(path):
                raise ValueError(f"{where}.{key}: a field path like `data.status` is required")
            paths[key] = path
        types = spec.get("types")
        if (
            not isinstance(types, Mapping)
            or not 0 < len(types) <= 64
            or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in types)
            or not all(v in OUTCOME_TYPES for v in types.values())
        ):
            raise ValueError(f"{where}.types: map the vendor's names onto {', '.join(OUTCOME_TYPES)}")
        out[vendor] = GenericReports(
            type=str(paths["type"]),
            id=str(paths["id"]),
            user_id=str(paths["user_id"]),
            trigger_id=str(paths["trigger_id"]),
            ts=paths["ts"],
            items=paths["items"],
            types=dict(types),
        )
    return out
