"""Ingestion benchmark: every way in, side by side with the raw-consumer limit, in one run.

On Apache Kafka (KRaft; `--broker tansu` for the embedded one) and a fresh redis-server:
pre-load N synthetic events once as one-event messages and once as envelopes, then
measure, one process each:

- `limit`: aiokafka `getmany` + orjson decode of the one-event topic, no processing;
- `replay_publish`: `lifecycle replay` of the same events from a JSON Lines file;
- `faust_floor`, `naive_faust`, `quix`: the peers in `bench/peers/` on the one-event topic;
- `ours_envelopes` / `ours_single`: one `lifecycle worker` until every event is
  committed to Redis (timed from its first commit to its last), with CPU s per million
  events and peak RSS; `ours_bridge`: the bridge and one worker, end to end;
- `ours_backfill` (and `quix_backfill`): a log shaped like a real order history
  (`bench.order_history`: nearly every event of a batch another user's, months apart, the
  event clock crossing every threshold), replayed in `event` clock mode until committed;
- `bridge`: the bridge alone re-publishing the one-event topic as envelopes, acknowledged;
- `scale`: two workers on the envelope topic;
- `latency`: produce to committed and to visible in the API at half of `ours_envelopes`;
- `collector`: `POST /v1/events` with 100-event batches from 8 concurrent clients to a
  running `lifecycle api`, each answered after the broker's ack;
- memory and sweep at 1,000,000 users (`bench.population`);
- `by_users`, `by_envelope_size`: one worker on envelopes at several numbers of distinct
  users and envelope sizes, `--sweep-events` events each (`bench.sweeps`).

The machine is shared and noisy: compare the ratios within one run, not absolute figures
across runs. A phase gives up after `BENCH_PHASE_TIMEOUT` seconds (default 900): it is recorded with
the rate it had reached and listed under `timed_out`, and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from aiokafka import AIOKafkaConsumer
from tqdm import tqdm

from bench.latency import measure_latency
from bench.order_history import order_history
from bench.phases import Phases, PhaseTimedOut, phase_timeout
from bench.population import memory_and_sweep
from bench.sweeps import SIZES, USERS, Sweeps
from bench.worker_phase import measure_worker, worker_env
from service.core.profile import load_profile
from service.dev.generator import generate
from service.dev.kafka_broker import KafkaBroker, TansuBroker
from service.dev.processes import free_port
from service.dev.redis_server import RedisServer
from service.kafka.bridge import Bridge
from service.kafka.publisher import EventPublisher
from service.kafka.topics import create_topics
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
QUIX_VERSION = "3.28.0"
START_MS = 1_700_000_000_000


def measure_limit(bootstrap: str, topic: str, total: int) -> float:
    """Events/s of a bare aiokafka consumer that only decodes (the ceiling for Python)."""

    async def run() -> float:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
        )
        await consumer.start()
        seen = 0
        started = None
        try:
            while seen < total:
                batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
                if started is None and batch:
                    started = time.perf_counter()
                for msgs in batch.values():
                    for m in msgs:
                        orjson.loads(m.value)
                        seen += 1
        finally:
            await consumer.stop()
        assert started is not None
        return seen / (time.perf_counter() - started)

    return asyncio.run(run())


def measure_replay(env: dict[str, str], events: list[dict[str, Any]], work: Path) -> float:
    """Events/s `lifecycle replay` publishes from a JSON Lines file (read, validated, sent as
    envelopes, acknowledged), as the command itself reports it."""
    path = work / "replay.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "replay", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=phase_timeout(),
        )
    except subprocess.TimeoutExpired as exc:
        raise PhaseTimedOut(0.0) from exc
    found = re.search(r"\(([\d,]+) ev/s", result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"lifecycle replay failed ({result.returncode}): {result.stdout}{result.stderr}")
    return float(found.group(1).replace(",", ""))


def measure_peer(module: str, python: str, env: dict[str, str], log: Path) -> float:
    """Events/s a peer app (bench/peers) reports once it has seen every event."""
    args = [python, "-m", module] + (["worker", "-l", "warn", "--without-web"] if "faust" in module else [])
    result = log.with_suffix(".json")
    with open(log, "wb") as out:
        try:
            proc = subprocess.run(
                args,
                env={**os.environ, **env, "PEER_RESULT": str(result)},
                stdout=out,
                stderr=out,
                timeout=phase_timeout(),
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired as exc:  # a peer reports only once done: no rate to give
            raise PhaseTimedOut(0.0) from exc
    if not result.exists():
        raise SystemExit(f"{module} reported nothing (exit {proc.returncode}); see {log}")
    return float(json.loads(result.read_text())["events_per_s"])


def quix_python() -> str:
    """The virtualenv Quix Streams runs in (its pins differ from the service's); made once."""
    venv = ROOT / "bench" / ".venv-quix"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"], check=True
        )
    return str(python)


def measure_bridge(settings: Settings, source: str, total: int) -> float:
    async def run() -> float:
        bridge = Bridge(settings, source, group_id=f"bench-bridge-{settings.app_id}")
        task = asyncio.create_task(bridge.run())
        while bridge.stats.events == 0:
            await asyncio.sleep(0.005)
        started, first = time.perf_counter(), bridge.stats.events
        while bridge.stats.events < total:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        bridge.stop()
        await task
        return (total - first) / elapsed

    return asyncio.run(run())


def measure_collector(
    api_url: str, events: list[dict[str, Any]], batch: int = 100, clients: int = 8
) -> float:
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]

    async def run() -> float:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
                while not queue.empty():
                    body = queue.get_nowait()
                    r = await http.post(
                        "/v1/events", content=body, headers={"content-type": "application/json"}
                    )
                    r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return len(events) / (time.perf_counter() - started)

    return asyncio.run(run())


def _versions(rds: RedisServer) -> dict[str, str]:
    from importlib.metadata import version

    client = redis.Redis.from_url(rds.url)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    return {
        "python": platform.python_version(),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "redis-py": version("redis"),
        "redis-server": redis_version,
        "quixstreams": QUIX_VERSION,
        "kafka": "4.1.1",
    }


PHASES = (
    "replay_publish",
    "faust_floor",
    "naive_faust",
    "quix",
    "ours_envelopes",
    "ours_single",
    "ours_bridge",
    "ours_backfill",
    "bridge_alone",
    "scale_2_workers",
    "latency",
    "collector",
    "by_users",
    "by_envelope_size",
    "memory",
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase, or those of `args.phases` (the raw-consumer limit always: ratios need it)."""
    chosen = set(args.phases or PHASES)

    def want(name: str) -> bool:
        return name in chosen

    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    broker_cls = KafkaBroker if args.broker == "kafka" else TansuBroker
    n_parts = args.partitions
    points = len(args.sweep_users) * want("by_users") + len(args.sweep_sizes) * want("by_envelope_size")
    phases = tqdm(total=16 + points, desc="benchmark", unit="phase", position=0, file=sys.stderr)

    def done(name: str, text: str) -> None:
        phases.set_postfix_str(f"{name}: {text}")
        phases.update()
        tqdm.write(f"{name}: {text}", file=sys.stderr)

    with RedisServer(work / "redis") as rds, broker_cls(work / "broker") as broker:
        bs = broker.bootstrap
        events = list(
            islice(
                generate(
                    users=args.users, start_ms=START_MS, days=90, seed=3, profile=load_profile("fintech")
                ),
                args.events,
            )
        )
        total = len(events)
        topics = {
            name: n_parts
            for name in (
                "single",
                "env",
                "bridged",
                "bridge_only",
                "collected",
                "latency",
                "replayed",
                "backfill",
                "backfill_single",
            )
        }
        create_topics(bs, {**topics, **{f"{t}.dlq": n_parts for t in topics}})
        backfill = list(order_history(events=total, start_ms=START_MS, seed=5))
        loads = [("single", True, events), ("env", False, events), ("backfill", False, backfill)]
        if args.quix:
            loads.append(("backfill_single", True, backfill))
        for topic, single, log in loads:
            pub = EventPublisher(bs, topic, n_parts, envelope_size=200, single=single)
            pub.publish(tqdm(log, desc=f"pre-load {topic}", unit="ev", leave=False, file=sys.stderr))
            pub.flush()
            pub.close()
        done(
            "pre-load",
            f"{total} events twice ({args.users} users, {n_parts} partitions); an order history of "
            f"{len(backfill)} events ({len({e['user_id'] for e in backfill})} users)",
        )
        rates: dict[str, Any] = {}
        details: dict[str, Any] = {}
        run_phases = Phases()
        rates["limit"] = round(measure_limit(bs, "single", total))
        done("limit", f"{rates['limit']:,} ev/s")
        replay_env = worker_env(
            bs, rds.url, "replayed", n_parts, "replay", LIFECYCLE_MIN_EVENT_TIME="2000-01-01"
        )
        if want("replay_publish"):
            rates["replay_publish"] = round(
                run_phases.rate("replay_publish", lambda: measure_replay(replay_env, events, work))
            )
            done("replay", f"{rates['replay_publish']:,} ev/s published by lifecycle replay from JSON Lines")
        peer_env = {
            "PEER_BOOTSTRAP": bs,
            "PEER_TOPIC": "single",
            "PEER_TOTAL": str(total),
            "PEER_REDIS": rds.url,
        }
        for name, module, group in (
            ("faust_floor", "bench.peers.faust_floor", "floor"),
            ("naive_faust", "bench.peers.naive_faust", "naive"),
        ):
            if want(name):
                env = {**peer_env, "PEER_GROUP": group}
                log_file = work / f"{group}.log"
                rates[name] = round(
                    run_phases.rate(name, partial(measure_peer, module, sys.executable, env, log_file))
                )
                done(name, f"{rates[name]:,} ev/s")
        if args.quix and want("quix"):
            quix_env = {**peer_env, "PEER_GROUP": "quix", "PEER_STATE_DIR": str(work / "quix-state")}
            python = quix_python()
            rates["quix"] = round(
                run_phases.rate(
                    "quix", lambda: measure_peer("bench.peers.quix_app", python, quix_env, work / "quix.log")
                )
            )
            done("quix", f"{rates['quix']:,} ev/s")
            backfill_env = {**quix_env, "PEER_TOPIC": "backfill_single", "PEER_TOTAL": str(len(backfill))}
            backfill_env |= {"PEER_GROUP": "quix-backfill", "PEER_STATE_DIR": str(work / "quix-backfill")}
            rates["quix_backfill"] = round(
                run_phases.rate(
                    "quix_backfill",
                    lambda: measure_peer("bench.peers.quix_app", python, backfill_env, work / "quixb.log"),
                )
            )
            done("quix_backfill", f"{rates['quix_backfill']:,} ev/s on the order history")
        else:
            done("quix", "skipped (--no-quix)")
        for name, topic, bridge_from in (
            ("ours_envelopes", "env", None),
            ("ours_single", "single", None),
            ("ours_bridge", "bridged", "single"),
        ):
            if not want(name):
                continue
            env = worker_env(bs, rds.url, topic, n_parts, name)
            details[name] = run_phases.details(
                name,
                partial(
                    measure_worker, env, rds.url, name, n_parts, total, work / name, bridge_from=bridge_from
                ),
            )
            rates[name] = details[name]["events_per_s"]
            done(name, f"{rates[name]:,} ev/s, {details[name]['cpu_s_per_million']} CPU s/M")
        if want("ours_backfill"):
            # the order history: nearly every event of a batch is another user's, months apart
            env = worker_env(bs, rds.url, "backfill", n_parts, "backfill")
            details["ours_backfill"] = run_phases.details(
                "ours_backfill",
                partial(measure_worker, env, rds.url, "backfill", n_parts, len(backfill), work / "backfill"),
            )
            rates["ours_backfill"] = details["ours_backfill"]["events_per_s"]
            done(
                "ours_backfill",
                f"{rates['ours_backfill']:,} ev/s, {details['ours_backfill']['cpu_s_per_million']} CPU s/M",
            )
        if want("bridge_alone"):
            bridge_settings = Settings(
                kafka_bootstrap=bs,
                redis_url=rds.url,
                events_topic="bridge_only",
                partitions=n_parts,
                app_id="bridge",
            )
            details["bridge_alone"] = round(measure_bridge(bridge_settings, "single", total))
            done(
                "bridge",
                f"{details['bridge_alone']:,} ev/s alone, one-event topic to envelopes, acknowledged",
            )
        two: dict[str, Any] = {}
        if want("scale_2_workers"):
            env = worker_env(bs, rds.url, "env", n_parts, "scale2")
            two = run_phases.details(
                "scale_2_workers",
                lambda: measure_worker(env, rds.url, "scale2", n_parts, total, work / "scale2", workers=2),
            )
            done("scale", f"2 workers {two['events_per_s']:,} ev/s vs 1: {rates.get('ours_envelopes')}")
        latency: dict[str, Any] | None = None
        if want("latency"):
            api_port = free_port()
            lat_env = worker_env(
                bs,
                rds.url,
                "latency",
                n_parts,
                "latency",
                LIFECYCLE_CLOCK="wall",
                LIFECYCLE_API_PORT=str(api_port),
            )
            half = max(rates.get("ours_envelopes", 0), 1_000) / 2
            latency = measure_latency(
                lat_env, bs, "latency", n_parts, rds.url, "latency", api_port, events,
                rate=half, seconds=args.latency_seconds, log=work / "latency",
            )  # fmt: skip
            done("latency", f"committed {latency['committed_ms']}, visible {latency['visible_ms']}")
        if want("collector"):
            port = free_port()
            api_env = worker_env(bs, rds.url, "collected", n_parts, "collector", LIFECYCLE_API_PORT=str(port))
            with open(work / "api.log", "wb") as out:
                api = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "api"], env=api_env, stdout=out, stderr=out
                )
            try:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                details["collector_batches_of_100"] = round(
                    measure_collector(f"http://127.0.0.1:{port}", events)
                )
            finally:
                api.terminate()
                api.wait(30)
            done("collector", f"{details['collector_batches_of_100']:,} ev/s")
        sweeps = Sweeps(bs, rds.url, n_parts, args.sweep_events, START_MS, work, run_phases, done)
        by_users = sweeps.by_users(args.sweep_users) if want("by_users") else None
        by_size = None
        if want("by_envelope_size"):
            by_size = sweeps.by_envelope_size(args.sweep_sizes, min(args.users, args.sweep_events))
        versions = _versions(rds)
    population: dict[str, Any] | None = None
    if want("memory"):
        population = memory_and_sweep(args.memory_users, n_parts, work)
        done(
            "memory+sweep",
            f"{population['redis_bytes_per_user']} B/user; sweeps {population['sweep_s']} "
            f"at {args.memory_users:,} users",
        )
    phases.close()
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": versions,
        "broker": args.broker,
        "events": total,
        "users": args.users,
        "partitions": n_parts,
        "phases": [name for name in PHASES if want(name)],
        "rates": rates,
        "timed_out": run_phases.timed_out,
        "ratios_to_limit": {k: round(v / rates["limit"], 3) for k, v in rates.items() if k != "limit"},
        "cpu_s_per_million": _per_worker_phase(details, two, "cpu_s_per_million"),
        "redis_cpu_s_per_million": _per_worker_phase(details, two, "redis_cpu_s_per_million"),
        "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in details.items() if isinstance(v, dict)},
    }
    if latency is not None:
        result["latency_ms"] = {
            "p50": latency["committed_ms"]["p50"],
            "p99": latency["committed_ms"]["p99"],
            "committed": latency["committed_ms"],
            "visible_in_api": latency["visible_ms"],
            "offered_events_per_s": latency["offered_events_per_s"],
        }
    if population is not None:
        result |= {
            "redis_bytes_per_user": population["redis_bytes_per_user"],
            "redis_bytes_per_user_by_key": population["redis_bytes_per_user_by_key"],
            "memory_users": population["users"],
            "sweep_s": population["sweep_s"],
            "sweep_changes": population["sweep_changes"],
        }
    if two:
        result["scale_2_workers"] = {
            "events_per_s": two["events_per_s"],
            "ratio_to_1_worker": round(two["events_per_s"] / max(rates.get("ours_envelopes", 0), 1), 2),
            "cpu_s_per_million": two["cpu_s_per_million"],
            "redis_cpu_s_per_million": two["redis_cpu_s_per_million"],
        }
    for name in ("collector_batches_of_100", "bridge_alone"):
        if name in details:
            result[name] = details[name]
    if by_users is not None or by_size is not None:
        result["sweep_events"] = args.sweep_events
    if by_users is not None:
        result["by_users"] = by_users
    if by_size is not None:
        result["by_envelope_size"] = by_size
    return result


def _per_worker_phase(details: dict[str, Any], two: dict[str, Any], key: str) -> dict[str, Any]:
    """`key` of every worker phase that ran: phase -> value (None if it timed out)."""
    found = {name: v[key] for name, v in details.items() if isinstance(v, dict)}
    return found | ({"scale_2_workers": two[key]} if two else {})


def _cpu_rows(result: dict[str, Any]) -> list[str]:
    """Worker and Redis CPU seconds per million events, side by side, per worker phase."""
    worker = result.get("cpu_s_per_million", {})
    server = result.get("redis_cpu_s_per_million", {})
    if not worker and not server:
        return []
    rows = [f"{'CPU s per million events':<24} {'worker':>8} {'Redis':>8}"]
    for name in worker | server:
        rows.append(f"{name:<24} {_num(worker.get(name)):>8} {_num(server.get(name)):>8}")
    return rows


def _sweep_rows(result: dict[str, Any]) -> list[str]:
    """One row per sweep point: rate, worker and Redis CPU s per million, users present."""
    rows: list[str] = []
    late = set(result.get("timed_out", []))
    for sweep in ("by_users", "by_envelope_size"):
        if sweep not in result:
            continue
        title = f"{sweep} ({result['sweep_events']:,} ev; CPU s/M)"
        rows.append(f"{title:<40} {'events/s':>10} {'worker':>8} {'Redis':>8} {'users':>10}")
        for key, point in result[sweep].items():
            note = "  timed out (the rate it had reached)" if f"{sweep}/{key}" in late else ""
            rows.append(
                f"  {int(key):<38,} {point['events_per_s']:>10,} {_num(point['cpu_s_per_million']):>8} "
                f"{_num(point['redis_cpu_s_per_million']):>8} {point['users_present']:>10,}{note}"
            )
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def table(result: dict[str, Any]) -> str:
    r = result["rates"]
    rows = [f"{'phase':<16} {'events/s':>10} {'x limit':>8}"]
    late = set(result.get("timed_out", []))
    for name, value in r.items():
        note = "  timed out (the rate it had reached)" if name in late else ""
        rows.append(f"{name:<16} {value:>10,} {value / r['limit']:>8.3f}{note}")
    if "latency_ms" in result:
        lat = result["latency_ms"]
        rows.append(
            f"latency at {lat['offered_events_per_s']:,} ev/s: "
            f"committed p50 {lat['p50']} ms, p99 {lat['p99']} ms; "
            f"visible in API p50 {lat['visible_in_api']['p50']} ms, p99 {lat['visible_in_api']['p99']} ms"
        )
    if "redis_bytes_per_user" in result:
        rows.append(
            f"Redis bytes per user ({result['memory_users']:,} users): {result['redis_bytes_per_user']}"
        )
        rows.append(
            f"sweep: none {result['sweep_s']['none']} s, 1% crossing {result['sweep_s']['crossing_1pct']} s"
        )
    for name in ("bridge_alone", "collector_batches_of_100"):
        if name in result:
            rows.append(f"{name}: {result[name]:,} ev/s")
    if "scale_2_workers" in result:
        two = result["scale_2_workers"]
        rows.append(f"2 workers: {two['events_per_s']:,} ev/s ({two['ratio_to_1_worker']} x one worker)")
    rows += _cpu_rows(result) + _sweep_rows(result)
    return "\n".join(rows)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(",") if n.strip())


def _listed(numbers: tuple[int, ...]) -> str:
    return ",".join(str(n) for n in numbers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--memory-users", type=int, default=1_000_000, help="users for memory and sweep")
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--no-quix", dest="quix", action="store_false", help="skip the Quix Streams peer")
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument(
        "--phases",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        help=f"comma-separated phases to run (default: all): {', '.join(PHASES)}",
    )
    parser.add_argument("--sweep-events", type=int, default=1_000_000, help="events of each sweep point")
    parser.add_argument(
        "--sweep-users",
        type=_numbers,
        default=USERS,
        help=f"by_users: distinct users of each point, at most --sweep-events (default {_listed(USERS)})",
    )
    parser.add_argument(
        "--sweep-sizes",
        type=_numbers,
        default=SIZES,
        help=f"by_envelope_size: events per envelope of each point (default {_listed(SIZES)})",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds' run (small N, Tansu, no Quix): does it all work?"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.phases or ()) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if args.smoke:
        args.events, args.users, args.memory_users, args.latency_seconds = 20_000, 2000, 5000, 2
        args.broker, args.quix = "tansu", False
        args.sweep_events, args.sweep_users, args.sweep_sizes = 5000, (5000,), (10,)
        # Tansu completes a group's first join after about half its rebalance timeout (the
        # worker's 10 s, Faust's 60 s for the peers): 3 s, so joining is not most of the run
        os.environ["LIFECYCLE_SESSION_TIMEOUT"] = os.environ["PEER_SESSION_TIMEOUT"] = "3"
    if "by_users" in (args.phases or PHASES) and max(args.sweep_users) > args.sweep_events:
        parser.error(f"--sweep-users: at most --sweep-events ({args.sweep_events:,}) users per point")
    result = run(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
