"""`lifecycle audience export|publish`: an audience of the store to a file or to Kafka.

Flags name a profile audience (`--name`) or give the same filters as `GET /audiences/users`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

from kafka import KafkaProducer
from tqdm import tqdm

from service.cli.audience_export import PublishFailed, export, open_output, publish
from service.core.audience_filters import AudienceFilter, AudienceFilterError, parse_filter
from service.kafka.options import kafka_python_options
from service.kafka.topics import create_topics
from service.settings import Settings
from service.storage.audiences import AudienceReader
from service.storage.client import discover, redis_client
from service.storage.queries import Queries


def _audience(args: argparse.Namespace, settings: Settings) -> tuple[str, AudienceFilter]:
    """The audience the flags name: `--name` of the profile, or ad-hoc filters (keyed by their digest)."""
    profile = settings.loaded_profile
    if args.name:
        found = {a.name: a for a in profile.audiences}.get(args.name)
        if found is None:
            names = ", ".join(a.name for a in profile.audiences) or "none"
            sys.exit(f"lifecycle audience: no audience {args.name!r} in profile {profile.name} ({names})")
        return found.name, found.filter
    raw = {
        "state": args.state,
        "channel": args.channel,
        "stage": args.stage,
        "not_stage": args.not_stage,
        "segment": args.segment,
        "entered_since": args.entered_since,
        "entered_before": args.entered_before,
    }
    try:
        f = parse_filter({k: v for k, v in raw.items() if v is not None}, [s.name for s in profile.funnel])
    except AudienceFilterError as exc:
        sys.exit(f"lifecycle audience: {exc}")
    return f"filter-{f.fingerprint()}", f


def run_audience(args: argparse.Namespace, settings: Settings) -> None:
    """Stream the audience to a file or a topic, with a progress bar and a summary."""
    name, f = _audience(args, settings)
    to_stdout = args.action == "export" and args.output in (None, "-")
    report = sys.stderr if to_stdout else sys.stdout

    async def run() -> int:
        client = redis_client(settings)
        profile = settings.loaded_profile
        queries = Queries(client, settings.key_prefix, settings.partitions, profile, settings.clock)
        reader = AudienceReader(queries)
        try:
            await discover(client)
            total = await reader.indexed_count(f)
            with tqdm(total=total, desc=name, unit="user", unit_scale=True, disable=None) as bar:
                if args.action == "export":
                    fmt = args.format or ("csv" if (args.output or "").endswith(".csv") else "jsonl")
                    out = open_output(args.output)
                    try:
                        return await export(reader, f, out, fmt, bar.update)
                    finally:
                        if not to_stdout:
                            out.close()
                return await _publish_audience(settings, reader, f, name, args, bar.update)
        finally:
            await client.aclose()

    started = time.perf_counter()
    count = asyncio.run(run())
    elapsed = time.perf_counter() - started
    topic = args.topic if args.action == "publish" and args.topic else settings.audiences_topic
    where = (args.output or "stdout") if args.action == "export" else f"topic {topic}"
    verb = "exported" if args.action == "export" else f"published (campaign {args.campaign!r})"
    print(
        f"{verb} {count} users of audience {name} to {where} in {elapsed:.1f}s "
        f"({count / max(elapsed, 1e-9):,.0f} users/s)",
        file=report,
    )


async def _publish_audience(
    settings: Settings,
    reader: AudienceReader,
    f: AudienceFilter,
    name: str,
    args: argparse.Namespace,
    progress: Callable[[int], None],
) -> int:
    topic = args.topic or settings.audiences_topic
    create_topics(settings.kafka_bootstrap, {topic: settings.partitions}, **kafka_python_options(settings))
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=10,
        batch_size=1 << 20,
        **kafka_python_options(settings),  # TLS and SASL, as every other client
    )
    try:
        return await publish(
            reader,
            f,
            producer,
            topic,
            audience=name,
            campaign=args.campaign,
            source=settings.triggers_source,
            type_prefix=settings.triggers_type_prefix,
            progress=progress,
        )
    except PublishFailed as exc:
        sys.exit(f"lifecycle audience publish: {exc}; re-run it: ids are the same, nobody is sent twice")
    finally:
        producer.close()
