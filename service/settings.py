"""One typed settings object, read from `LIFECYCLE_*` environment variables at the edge."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.durations import parse_duration
from service.core.envelopes import ENVELOPE_MAX_BYTES
from service.core.events import MAX_TS_MS, TimeBounds
from service.core.profile import Profile, load_profile


class Settings(BaseSettings):
    """Every knob of the service; docs/configuration.md is generated from this class (`make docs`)."""

    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="the brokers: a comma-separated host:port list"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// (TLS) URL; the password goes in the URL and is masked in logs",
    )
    redis_cluster: bool = Field(False, description="true: the Redis URL names a node of a Redis Cluster")
    redis_tls_ca_file: str = Field(
        "", description="CA bundle that signed the Redis server's certificate (rediss://); empty: system CAs"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client of the service connects"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism, with SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_username: str = Field("", description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (a secret: never logged)")
    kafka_ssl_cafile: str = Field("", description="CA bundle of the brokers' certificates; empty: system CAs")
    kafka_ssl_certfile: str = Field("", description="client certificate (PEM) for mutual TLS")
    kafka_ssl_keyfile: str = Field("", description="the client certificate's private key (PEM)")
    kafka_ssl_check_hostname: bool = Field(
        True, description="verify the broker's host name against its certificate"
    )
    redis_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="seconds a worker's Redis call may take before Redis counts as unavailable "
        "and the worker pauses",
    )
    profile: str = Field(
        "daily_app", description="a built-in profile (insurance, fintech, daily_app) or a YAML/TOML file path"
    )
    clock: Literal["wall", "event"] = Field(
        "wall", description="wall: live; event: replay/backfill, the clock is the latest event time seen"
    )
    events_topic: str = Field("user-events", description="the events topic (keyed by user id)")
    dlq_topic: str = Field("user-events.dlq", description="dead letters: rejected messages with their reason")
    triggers_topic: str = Field(
        "lifecycle-triggers",
        description="CloudEvents of fired triggers; same partition count as the events topic",
    )
    triggers_source: str = Field("/lifecycle", description="CloudEvents `source` of the triggers")
    triggers_type_prefix: str = Field(
        "dev.userops", description="CloudEvents `type` is <prefix>.lifecycle.<kind>.v1"
    )
    audiences_topic: str = Field(
        "lifecycle-audiences",
        description="where `lifecycle audience publish` writes (one CloudEvent per user; created if missing, "
        "with LIFECYCLE_PARTITIONS partitions)",
    )
    webhook_url: str = Field(
        "",
        description="where `lifecycle webhooks` POSTs each trigger CloudEvent (structured mode); "
        "https unless loopback or LIFECYCLE_WEBHOOK_ALLOW_HTTP",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks signing secret (`whsec_...`; a secret: never logged)"
    )
    webhook_allow_http: bool = Field(
        False, description="allow a plain-http webhook URL that is not loopback (trusted networks only)"
    )
    webhook_max_attempts: int = Field(
        6, ge=1, le=50, description="attempts per trigger before it goes to the webhook dead letters"
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=120, description="seconds one webhook attempt may take (connect + answer)"
    )
    webhook_backoff_base: float = Field(
        0.5, gt=0, le=60, description="first retry waits up to this many seconds, doubling per attempt"
    )
    webhook_backoff_cap: float = Field(
        60.0, gt=0, le=3600, description="longest wait between attempts, a 429's Retry-After included"
    )
    webhook_concurrency: int = Field(
        32, ge=1, le=1_000, description="webhook requests in flight at once per relay (the pool size)"
    )
    mailgun_signing_key: SecretStr | None = Field(
        None,
        description="Mailgun's webhook signing key: when set, POST /v1/outcomes/mailgun checks each "
        "report's signature (a secret: never logged)",
    )
    webhook_metrics_port: int = Field(
        6068,
        ge=0,
        le=65535,
        description="where `lifecycle webhooks` serves /metrics (on LIFECYCLE_WORKER_HOST); 0: not served",
    )
    webhook_dlq_topic: str = Field(
        "lifecycle-triggers.webhook-dlq",
        description="triggers the webhook receiver refused (4xx) or that failed every attempt",
    )
    relay_batch: int = Field(
        500, ge=1, le=10_000, description="trigger outbox entries relayed to Kafka per round"
    )
    partitions: int = Field(
        8,
        ge=1,
        le=10_000,
        description="partitions of the events topic (created if missing; must match if it exists)",
    )
    app_id: str = Field("lifecycle", description="Kafka consumer group / Faust app id")
    key_prefix: str = Field("lc", description="prefix of every Redis key")
    data_dir: str = Field(
        "", description="Faust's scratch directory (no state lives there); default <tmp>/<app_id>-data"
    )
    api_host: str = Field("127.0.0.1", description="where the API listens")
    api_port: int = Field(8000, ge=0, le=65535, description="the API's port")
    api_key: SecretStr | None = Field(
        None,
        description="when set, every endpoint but /healthz, /readyz, /metrics and the console's page "
        "and assets needs `Authorization: Bearer <key>` or `X-API-Key: <key>` (401 otherwise); "
        "`lifecycle api` refuses to listen on a non-loopback LIFECYCLE_API_HOST without it (an empty "
        "value counts as none)",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="the key of the API's erasure endpoints (`DELETE /users/{id}`, `POST "
        "/users/{id}/restore`, `GET /erasures`), as `Authorization: Bearer <key>` or `X-API-Key`; "
        "neither the API key nor a write key opens them. Unset (or empty): they answer 403 and "
        "erasure goes through `lifecycle users delete`",
    )
    write_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="write keys of the Segment/RudderStack tracking API (`/v1/batch`, `/v1/track`, ...), a "
        'JSON list (`["wk1","wk2"]`); given as HTTP Basic user name or `writeKey` in the body; they may '
        "only write: on any other endpoint a write key is a 403. Empty: the tracking API answers 401",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins browser SDKs may send tracking calls from (CORS, only on the tracking "
        'paths), a JSON list (`["https://shop.example"]`); empty: no cross-origin calls',
    )
    api_insecure: bool = Field(
        False,
        description="true: let `lifecycle api` listen on a non-loopback address without LIFECYCLE_API_KEY "
        "(it warns); for a network that is private by other means",
    )
    cursor_secret: SecretStr | None = Field(
        None,
        description="key that signs the audiences API's page cursors (HMAC-SHA256), so a cursor works "
        "on every API replica and after a restart; unset: derived from LIFECYCLE_API_KEY when that is "
        "set, else random per process (then a cursor only works on the process that made it)",
    )
    worker_port: int = Field(
        6066, ge=0, le=65535, description="the worker's web port (/metrics, /readyz); 0 picks a free one"
    )
    worker_host: str = Field(
        "127.0.0.1", description="where the worker's web port listens (0.0.0.0 in containers)"
    )
    batch_messages: int = Field(1000, ge=1, le=100_000, description="max Kafka messages per batch")
    batch_wait: float = Field(
        0.02,
        gt=0,
        le=10,
        description=(
            "seconds to wait to fill a batch: the floor of produce-to-committed latency below "
            "full load; longer means fewer, larger commits"
        ),
    )
    sweep_interval: float = Field(1.0, gt=0, le=3600, description="seconds between sweeps")
    session_timeout: float = Field(
        10.0, ge=3, le=300, description="seconds before a silent worker loses its partitions"
    )
    metadata_max_age: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="seconds between the worker's metadata refreshes: how soon a deleted and recreated topic "
        "is seen (Kafka's default is 5 minutes)",
    )
    dedup_window: str = Field(
        "1h",
        description="how long after its first arrival a duplicate event id is still recognised "
        "(1m..30d; 64 bytes of Redis per event in the window)",
    )
    max_future: str = Field(
        "1d",
        description="how far past the server's wall clock an event ts may be, in both clock modes "
        "(later: dead-lettered). It allows for devices' clock skew; an event dated years ahead "
        "would otherwise move the event clock there and age every user at once",
    )
    min_event_time: str = Field(
        "2000-01-01",
        description="the earliest event ts accepted (ISO 8601 date or UTC time; earlier: "
        "dead-lettered); move it back to backfill older logs",
    )
    collector_max_events: int = Field(1000, ge=1, le=100_000, description="events per POST /v1/events")
    envelope_max_bytes: int = Field(
        ENVELOPE_MAX_BYTES,
        ge=1024,
        le=64 << 20,
        description="bytes per envelope message that the collector, the bridge and replay write; "
        "keep it under the events topic's max.message.bytes (1 MiB by default). A single "
        "event over it is refused (413 at the collector)",
    )
    collector_max_bytes: int = Field(
        5 << 20, ge=1024, description="bytes per request body, after decompression"
    )
    collector_timeout: float = Field(10.0, gt=0, description="seconds to wait for the broker's ack")
    whatif_max_new_window: str = Field(
        "30d", description="longest new_window a what-if question may ask (first_seen index kept that long)"
    )
    history_interval: float = Field(
        60.0, gt=0, le=3600, description="seconds between the API's snapshots of the lifecycle counts"
    )
    sweep_chunk: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="users a sweep reads and commits per Redis call: after a long outage, or for "
        "users imported with one timestamp, one call for all of them could outlast LIFECYCLE_REDIS_TIMEOUT",
    )
    max_channels: int = Field(
        200,
        ge=2,
        le=10_000,
        description="channels each partition keeps (the first seen); users arriving with another "
        "channel are counted under `~other`. Each channel costs index queries in every sweep, and "
        "channel names come from events",
    )
    metrics_max_channels: int = Field(
        50, ge=2, le=10_000, description="channels with a metrics label of their own; the rest are `~other`"
    )
    metrics_cache: float = Field(
        10.0,
        ge=0,
        le=300,
        description="seconds the API reuses the population gauges it computed for /metrics, so "
        "scrapes within that time cost Redis one computation (0: compute on every scrape)",
    )
    metrics_lease: float = Field(
        15.0,
        ge=1,
        le=600,
        description="seconds of the lease that lets one API replica at a time export the population "
        "gauges (the others export none, so sums over replicas are true); a dead holder is replaced "
        "within this time",
    )
    metrics_max_audience_walks: int = Field(
        10,
        ge=0,
        le=1000,
        description="named audiences whose size needs a walk of their users that one /metrics "
        "computation counts; the rest get no `lifecycle_audience_users` series (logged)",
    )
    log_level: str = Field("INFO", description="the worker's log level (passed to Faust as its loglevel)")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per log line (time, level, logger, message, partition and "
        "offset where known, exception); the image's default",
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Secrets never reach a log line: passwords in URLs are masked like `SecretStr` fields."""
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "redis_url" else value

    @field_validator("dedup_window")
    @classmethod
    def _dedup_window(cls, value: str) -> str:
        if not 60_000 <= parse_duration(value) <= 30 * 86_400_000:
            raise ValueError("between 1m and 30d")
        return value

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a worker's heartbeats to its group: a fifth of the session, at least 1."""
        return max(1.0, self.session_timeout / 5)

    @property
    def dedup_window_s(self) -> int:
        return parse_duration(self.dedup_window) // 1000

    @field_validator("write_keys", "cors_origins", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        """A list given as one string (a JSON list, or comma-separated) is split."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("api_key", "admin_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty key (`LIFECYCLE_API_KEY=` left blank in an env file) is no key: a blank
        key would accept every request that sends none."""
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _separate_keys(self) -> Settings:
        """Each key opens one kind of door: an admin key equal to the API key or to a write key
        would let a reader or a tracking snippet erase users."""
        if self.admin_key is not None:
            admin = self.admin_key.get_secret_value()
            others = [k.get_secret_value() for k in self.write_keys]
            if self.api_key is not None:
                others.append(self.api_key.get_secret_value())
            if admin in others:
                raise ValueError("LIFECYCLE_ADMIN_KEY must differ from LIFECYCLE_API_KEY and every write key")
        return self

    @field_validator("max_future", "whatif_max_new_window")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("min_event_time")
    @classmethod
    def _min_event_time(cls, value: str) -> str:
        _iso_ms(value)
        return value

    @cached_property
    def loaded_profile(self) -> Profile:
        return load_profile(self.profile)

    @property
    def first_index_window_ms(self) -> int:
        """How long users stay in the `first_seen` index: the new window or the what-if bound."""
        return max(parse_duration(self.whatif_max_new_window), self.loaded_profile.thresholds.new_window)

    @property
    def worker_data_dir(self) -> str:
        return self.data_dir or os.path.join(tempfile.gettempdir(), f"{self.app_id}-data")

    @property
    def max_future_ms(self) -> int:
        return parse_duration(self.max_future)

    @property
    def min_event_ms(self) -> int:
        return _iso_ms(self.min_event_time)

    def time_bounds(self, now_ms: int) -> TimeBounds:
        """The event times accepted at wall-clock `now_ms`."""
        return TimeBounds(self.min_event_ms, min(now_ms + self.max_future_ms, MAX_TS_MS))

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]


def _iso_ms(value: str) -> int:
    """Epoch milliseconds of an ISO 8601 date or time (UTC unless it names an offset)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or time (e.g. 1995-01-01)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000)
    if not 0 <= ms < MAX_TS_MS:
        raise ValueError(f"{value!r} must lie between 1970-01-01 and 2100-01-01")
    return ms


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by `**********`, for logs and reprs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "**********"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:**********@{host}"))
