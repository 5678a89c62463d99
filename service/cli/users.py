"""`lifecycle users delete|restore|log`: erasure from the command line.

`delete` and `restore` read user ids (one per line, from `--file` or arguments), record
each request, send one control message per id to the partition that owns it and wait for
the broker's `acks=all`; the workers apply them in order with the users' events. `log`
prints the record of requests (no ids). The command needs the broker and Redis, not the
API, so it works where HTTP erasure is off.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

from service.core.controls import control_message
from service.core.events import MAX_ID_LEN
from service.core.partitioning import partition_for
from service.settings import Settings
from service.storage import erasure_log

MAX_IDS = 1_000_000  # ids in one run; a longer list is split by the operator


class UsersError(ValueError):
    """Ids that cannot be sent: empty, too long, too many."""


def read_ids(args: argparse.Namespace) -> list[str]:
    """The ids of the arguments and the file, in order, each once; `UsersError` on a bad one."""

    def lines() -> Iterator[tuple[str, str]]:
        for i, uid in enumerate(args.ids or [], 1):
            yield f"argument {i}", uid
        if args.file:
            with Path(args.file).open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    yield f"{args.file}:{n}", line.rstrip("\r\n")

    out: dict[str, None] = {}
    for where, uid in lines():
        if not uid.strip():
            continue
        if len(uid) > MAX_ID_LEN:
            raise UsersError(f"{where}: a user id is at most {MAX_ID_LEN} characters")
        out[uid] = None
        if len(out) > MAX_IDS:
            raise UsersError(f"more than {MAX_IDS:,} ids: split the list")
    if not out:
        raise UsersError("no user ids: give them as arguments or with --file (one per line)")
    return list(out)


def send_requests(settings: Settings, action: str, ids: list[str], requester: str) -> list[str]:
    """Record and send one `action` request per id; returns the request ids, in order."""
    from service.kafka.options import kafka_python_options
    from service.kafka.publisher import EventPublisher
    from service.kafka.topics import ensure_topics

    who = erasure_log.checked_requester(requester)
    at = int(time.time() * 1000)
    requests = [(uid, uuid.uuid4().hex) for uid in ids]
    entries = [erasure_log.Entry(at, rid, action, who, "cli", "requested") for _, rid in requests]
    _append(settings, entries)
    ensure_topics(settings)
    publisher = EventPublisher(
        settings.kafka_bootstrap, settings.events_topic, settings.partitions, **kafka_python_options(settings)
    )
    try:
        for uid, rid in requests:
            value = control_message(action, uid, rid, at)
            publisher.publish_raw(value, uid.encode(), partition_for(uid, settings.partitions))
        publisher.flush()
    except Exception:
        done = int(time.time() * 1000)
        _append(settings, [erasure_log.Entry(done, rid, action, who, "cli", "failed") for _, rid in requests])
        raise
    finally:
        publisher.close()
    done = int(time.time() * 1000)
    _append(settings, [erasure_log.Entry(done, rid, action, who, "cli", "sent") for _, rid in requests])
    return [rid for _, rid in requests]


def _append(settings: Settings, entries: list[erasure_log.Entry]) -> None:
    from service.storage.client import redis_client

    async def run() -> None:
        client = redis_client(settings)
        try:
            for start in range(0, len(entries), 10_000):
                await erasure_log.append(client, settings.key_prefix, entries[start : start + 10_000])
        finally:
            await client.aclose()

    asyncio.run(run())


def print_log(settings: Settings, limit: int) -> None:
    from service.storage.client import redis_client

    async def run() -> list[erasure_log.Entry]:
        client = redis_client(settings)
        try:
            return await erasure_log.latest(client, settings.key_prefix, limit)
        finally:
            await client.aclose()

    for entry in asyncio.run(run()):
        sys.stdout.write(orjson.dumps(entry.to_json()).decode() + "\n")


def run_users(args: argparse.Namespace, settings: Settings) -> None:
    if args.action == "log":
        print_log(settings, args.limit)
        return
    try:
        ids = read_ids(args)
        action = "erase" if args.action == "delete" else "restore"
        sent = send_requests(settings, action, ids, args.requester or getpass.getuser())
    except (UsersError, erasure_log.RequesterError, OSError) as exc:
        sys.exit(f"lifecycle users {args.action}: {exc}")
    print(f"{len(sent)} {action} request(s) sent to {settings.events_topic}; the workers apply them in order")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    users = sub.add_parser("users", help="erase users (and lift an erasure); the record of requests")
    usub = users.add_subparsers(dest="action", required=True)
    for action, helptext in (
        ("delete", "erase users everywhere and drop their later events (suppression)"),
        ("restore", "lift the suppression: later events make new users"),
    ):
        a = usub.add_parser(action, help=helptext)
        a.add_argument("ids", nargs="*", help="user ids")
        a.add_argument("--file", help="a file of user ids, one per line")
        a.add_argument("--requester", help="who asks, for the record (default: the OS user)")
    log = usub.add_parser("log", help="the record of erase and restore requests, newest first (no ids)")
    log.add_argument("--limit", type=int, default=100)
    return users
