"""The `lifecycle` command: worker, api, dev (embedded stack), replay, generate.

Configuration comes from `LIFECYCLE_*` environment variables (see `Settings`); flags
only choose what a command does, not how the service is wired.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from service.cli.logs import configure, format_from_environment, logging_config
from service.cli.reach import (
    Unreachable,
    check_kafka,
    check_redis,
    fail,
    kafka_unreachable,
    quiet_client_libraries,
    redis_unreachable,
)
from service.cli.users import add_parser as users_parser
from service.core.events import validate_event
from service.core.profile import ProfileError
from service.kafka.publisher import PublishError, publish_events
from service.kafka.topics import TopicError, ensure_topics
from service.settings import Settings

log = logging.getLogger("lifecycle")


def _settings() -> Settings:
    try:
        settings = Settings()
        _ = settings.loaded_profile  # fail at start-up, naming the bad field
    except ProfileError as exc:
        sys.exit(f"lifecycle: invalid profile: {exc}")
    except ValueError as exc:
        sys.exit(f"lifecycle: invalid configuration: {exc}")
    return settings


def cmd_worker(args: argparse.Namespace) -> None:
    from faust import Worker

    from service.worker.collector import tune_for_batches
    from stream_topologies.app import create_app

    settings = _settings()
    check_kafka(settings)
    check_redis(settings)
    ensure_topics(settings)
    app = create_app(settings)
    config = logging_config(settings.log_format, settings.log_level.upper())
    worker = Worker(app, loglevel=settings.log_level.lower(), logging_config=config)
    tune_for_batches()
    worker.execute_from_commandline()


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from service.api.app import create_api
    from service.cli.exposure import exposure

    settings = _settings()
    refusal, warning = exposure(settings.api_host, settings.api_key is not None, settings.api_insecure)
    if refusal:
        sys.exit(refusal)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    config = logging_config(settings.log_format, "INFO")
    uvicorn.run(
        create_api(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=config,
        log_level="warning",  # uvicorn's own lines from warnings up, and no line per request
    )


def _progress(events: Iterable[dict[str, Any]], total: int | None, desc: str) -> Iterator[dict[str, Any]]:
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="ev", unit_scale=True, disable=None) as bar:
        pending = 0
        for ev in events:
            yield ev
            pending += 1
            if pending == 2000:
                bar.update(pending)
                pending = 0
        bar.update(pending)


def cmd_replay(args: argparse.Namespace) -> None:
    from service.cli.replay import read_events

    settings = _settings()
    bad: list[tuple[int, str]] = []
    bounds = settings.time_bounds(int(time.time() * 1000))

    def good() -> Iterator[dict[str, Any]]:
        for line_no, doc, error, _raw in read_events(args.path):
            if doc is not None and error is None:
                checked = validate_event(doc, bounds)
                if isinstance(checked, str):
                    error = checked
                else:
                    yield doc
                    continue
            bad.append((line_no, error or "unreadable"))

    try:
        check_kafka(settings)
    except Unreachable:
        for _ in good():  # the file's own problems need no broker: report them too
            pass
        _report_bad(bad)
        raise
    started = time.perf_counter()
    sent = publish_events(
        settings, _progress(good(), None, "replay"), single=args.single, envelope_size=args.envelope_size
    )
    elapsed = time.perf_counter() - started
    print(
        f"replayed {sent} events from {args.path} to {settings.events_topic} in {elapsed:.1f}s "
        f"({sent / max(elapsed, 1e-9):,.0f} ev/s, {'single events' if args.single else 'envelopes'}); "
        f"{len(bad)} invalid line(s) skipped"
    )
    _report_bad(bad)
    if bad:
        sys.exit(1)


def _report_bad(bad: list[tuple[int, str]]) -> None:
    for line_no, reason in bad[:20]:
        print(f"  line {line_no}: {reason}", file=sys.stderr)
    if len(bad) > 20:
        print(f"  ... and {len(bad) - 20} more invalid line(s)", file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> None:
    from service.dev.generator import generate

    settings = _settings()
    days = args.days
    start_ms = int((time.time() - days * 86_400) * 1000) if args.start_ms is None else args.start_ms
    events = generate(
        users=args.users, start_ms=start_ms, days=days, seed=args.seed, profile=settings.loaded_profile
    )
    started = time.perf_counter()
    if args.output:
        from service.cli.replay import write_jsonl

        count = write_jsonl(args.output, _progress(events, None, "generate"))
        print(f"wrote {count} events for {args.users} users over {days} days to {args.output}")
        return
    check_kafka(settings)
    sent = publish_events(
        settings, _progress(events, None, "generate"), single=args.single, envelope_size=args.envelope_size
    )
    elapsed = time.perf_counter() - started
    print(
        f"published {sent} events for {args.users} users over {days} days to {settings.events_topic} "
        f"in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):,.0f} ev/s)",
        flush=True,
    )
    if args.live_rate > 0:
        from service.dev.stack import feed_live

        print(f"live events: {args.live_rate:g}/s until stopped", flush=True)
        feed_live(settings, settings.loaded_profile, max(args.users // 5, 10), args.live_rate)


def cmd_healthcheck(args: argparse.Namespace) -> None:
    """Exit 0 when this container's API (`/healthz`) or worker (`/metrics`) answers locally."""
    import urllib.request

    settings = _settings()
    urls = args.url or [
        f"http://127.0.0.1:{settings.api_port}/healthz",
        f"http://127.0.0.1:{settings.worker_port}/metrics",
    ]
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=3) as reply:
                if reply.status == 200:
                    return
        except OSError:
            continue
    sys.exit(f"lifecycle healthcheck: no answer from {', '.join(urls)}")


def cmd_bridge(args: argparse.Namespace) -> None:
    from service.kafka.bridge import run_bridge

    settings = _settings()
    check_kafka(settings)
    ensure_topics(settings)
    run_bridge(settings, args.source, args.group, args.format)


def cmd_webhooks(args: argparse.Namespace) -> None:
    from service.kafka.topics import ensure_webhook_topics
    from service.webhooks.process import configuration_error, run_webhooks

    settings = _settings()
    problem = configuration_error(settings)
    if problem:
        sys.exit(f"lifecycle webhooks: {problem}")
    check_kafka(settings)
    ensure_topics(settings)
    ensure_webhook_topics(settings)
    run_webhooks(settings, args.group)


def cmd_thresholds_suggest(args: argparse.Namespace) -> None:
    import asyncio

    from service.cli.plot import line_chart_png, terminal_bars
    from service.core.durations import format_duration
    from service.core.gaps import BOUNDS_MS, CurvePoint, TooFewReturns, suggest
    from service.storage.client import redis_client
    from service.storage.queries import Queries

    settings = _settings()
    profile = settings.loaded_profile
    check_redis(settings)

    async def curve() -> dict[str, Any]:
        client = redis_client(settings)
        try:
            queries = Queries(client, settings.key_prefix, settings.partitions, profile, settings.clock)
            return await queries.return_curve(args.channel)
        finally:
            await client.aclose()

    body = asyncio.run(curve())
    points = [
        CurvePoint(p["idle_ms"], p["returns_after"], p["still_idle"], p["return_probability"])
        for p in body["points"]
    ]
    labels = [p["idle"] for p in body["points"]]
    print(f"return curve ({'channel ' + args.channel if args.channel else 'all channels'}):")
    notes = [f"{p.returns_after} returns after, {p.still_idle} still idle" for p in points]
    print(terminal_bars(labels, [p.probability for p in points], notes))
    levels = (args.silent, args.churned, args.dead)
    try:
        found = suggest(points, levels, args.min_returns)
    except TooFewReturns as exc:
        sys.exit(f"lifecycle thresholds suggest: {exc}")
    if args.plot:
        marks = [
            BOUNDS_MS.index(v)
            for v in (found.silent_after, found.churn_after, found.dead_after)
            if v in BOUNDS_MS
        ]
        with open(args.plot, "wb") as out:
            out.write(line_chart_png([p.probability for p in points], marks))
        print(f"\nplot written to {args.plot}")
    new_window = min(profile.thresholds.new_window, found.silent_after)
    print(
        f"""
# suggested from {found.returns} returns ({args.channel or "all channels"}): silent where a user
# idle that long returns with probability < {args.silent:g}, churned < {args.churned:g}, dead < {args.dead:g}
lifecycle:
  new_window: {format_duration(new_window)}
  silent_after: {format_duration(found.silent_after)}
  churn_after: {format_duration(found.churn_after)}
  dead_after: {format_duration(found.dead_after)}"""
    )


def cmd_audience(args: argparse.Namespace) -> None:
    from service.cli.audience import run_audience

    settings = _settings()
    check_redis(settings)
    if args.action == "publish":
        check_kafka(settings)
    run_audience(args, settings)


def cmd_users(args: argparse.Namespace) -> None:
    from service.cli.users import run_users

    settings = _settings()
    check_redis(settings)
    if args.action != "log":
        check_kafka(settings)
    run_users(args, settings)


def cmd_dev(args: argparse.Namespace) -> None:
    from service.dev.stack import run_dev

    run_dev(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifecycle", description=__doc__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the Kafka and Redis client libraries' messages and tracebacks",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a Faust worker (consumes the events topic)").set_defaults(
        func=cmd_worker
    )
    sub.add_parser("api", help="run the HTTP API").set_defaults(func=cmd_api)

    bridge = sub.add_parser("bridge", help="re-publish a one-event-per-message topic as envelopes")
    bridge.add_argument("--from", dest="source", required=True, help="the source topic")
    bridge.add_argument("--group", help="consumer group (default: <LIFECYCLE_APP_ID>-bridge)")
    bridge.add_argument(
        "--format",
        choices=("canonical", "segment"),
        default="canonical",
        help="source messages: canonical events, or Segment/RudderStack tracking messages",
    )
    bridge.set_defaults(func=cmd_bridge)

    webhooks = sub.add_parser(
        "webhooks", help="POST each trigger to LIFECYCLE_WEBHOOK_URL, signed (Standard Webhooks)"
    )
    webhooks.add_argument("--group", default=None, help="consumer group (default <app id>-webhooks)")
    webhooks.set_defaults(func=cmd_webhooks)
    thresholds = sub.add_parser("thresholds", help="what the data says about lifecycle thresholds")
    tsub = thresholds.add_subparsers(dest="action", required=True)
    suggest_cmd = tsub.add_parser("suggest", help="suggest silent/churned/dead thresholds from return gaps")
    suggest_cmd.add_argument("--channel", help="only users of this channel")
    suggest_cmd.add_argument("--plot", help="also draw the curve into this PNG file")
    suggest_cmd.add_argument("--silent", type=float, default=0.5, help="silent below this return probability")
    suggest_cmd.add_argument("--churned", type=float, default=0.2, help="churned below this")
    suggest_cmd.add_argument("--dead", type=float, default=0.05, help="dead below this")
    suggest_cmd.add_argument("--min-returns", type=int, default=100, help="refuse with fewer returns")
    suggest_cmd.set_defaults(func=cmd_thresholds_suggest)

    audience = sub.add_parser("audience", help="export or publish an audience (users matching filters)")
    asub = audience.add_subparsers(dest="action", required=True)
    for action, helptext in (
        ("export", "write the audience as CSV or JSON Lines to a file or stdout"),
        ("publish", "send the audience to a Kafka topic as CloudEvents (ids stable per campaign)"),
    ):
        a = asub.add_parser(action, help=helptext)
        a.add_argument("--name", help="a named audience of the profile (instead of the filters below)")
        a.add_argument("--state", action="append", help="new, retained, silent, churned, dead (repeatable)")
        a.add_argument("--channel", help="acquisition channel ('-' for none)")
        a.add_argument("--stage", help="a funnel stage the user reached")
        a.add_argument("--not-stage", help="a funnel stage the user has not reached")
        a.add_argument("--segment", help="an RFM segment, e.g. important_recall")
        when = "an ISO instant, a day YYYY-MM-DD (local midnight) or a duration before the clock"
        a.add_argument("--entered-since", help=f"entered their state at or after: {when} (7d)")
        a.add_argument("--entered-before", help=f"entered their state before: {when} (12h)")
        if action == "export":
            a.add_argument("--format", choices=("csv", "jsonl"), help="default: csv for *.csv, else jsonl")
            a.add_argument("--output", "-o", help="file to write (default: stdout)")
        else:
            a.add_argument("--campaign", required=True, help="run key: the same key gives the same event ids")
            a.add_argument("--topic", help="default LIFECYCLE_AUDIENCES_TOPIC (lifecycle-audiences)")
        a.set_defaults(func=cmd_audience)

    users_parser(sub).set_defaults(func=cmd_users)

    health = sub.add_parser(
        "healthcheck", help="exit 0 if the local API or worker answers (container probes)"
    )
    health.add_argument("--url", action="append", help="check these URLs instead (repeatable)")
    health.set_defaults(func=cmd_healthcheck)

    dev = sub.add_parser("dev", help="embedded stack: broker, redis, worker, API and demo generator")
    dev.add_argument("--users", type=int, default=3000, help="users in the backfilled history")
    dev.add_argument("--days", type=float, default=120, help="days of backfilled history")
    dev.add_argument("--rate", type=float, default=50, help="live demo events per second (0: none)")
    dev.add_argument("--workdir", default=".run", help="where logs and data of the stack go")
    dev.set_defaults(func=cmd_dev)

    for name, helptext in (("replay", "publish a JSON Lines or CSV file of events"), ("generate", "")):
        p = sub.add_parser(name, help=helptext or "publish (or write) a synthetic history")
        p.add_argument("--single", action="store_true", help="one event per message instead of envelopes")
        p.add_argument("--envelope-size", type=int, default=200, help="events per envelope")
        if name == "replay":
            p.add_argument("path", help="a .jsonl/.ndjson/.csv file, optionally .gz")
            p.set_defaults(func=cmd_replay)
        else:
            p.add_argument("--users", type=int, default=10_000)
            p.add_argument("--days", type=float, default=90)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--start-ms", type=int, default=None, help="history start (default: now - days)")
            p.add_argument("--output", help="write JSON Lines to this file instead of publishing")
            p.add_argument(
                "--live-rate", type=float, default=0, help="then keep sending this many live events/s"
            )
            p.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    configure(format_from_environment(), logging.INFO)
    args = build_parser().parse_args(argv)
    quiet_client_libraries(args.verbose)
    try:
        args.func(args)
    except Unreachable as exc:
        fail(str(exc))
    except (TopicError, PublishError) as exc:  # Kafka went away or refused after the check
        if args.verbose:
            raise
        fail(str(kafka_unreachable(_settings(), exc)))
    except Exception as exc:
        from aiokafka.errors import KafkaError as AsyncKafkaError
        from kafka.errors import KafkaError as SyncKafkaError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if args.verbose:
            raise
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            fail(str(redis_unreachable(_settings(), exc)))
        if isinstance(exc, SyncKafkaError | AsyncKafkaError):
            fail(str(kafka_unreachable(_settings(), exc)))
        raise


if __name__ == "__main__":
    main()
