"""A command that cannot reach Kafka or Redis says so in one line and exits non-zero.

Tried as a new user would: nothing runs on the configured addresses. Each command names
the setting to check, exits 1 within seconds, prints no traceback and no client-library
chatter (that comes with `--verbose`), and `replay` still reports the file's bad lines,
which it can find without a broker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

LIFECYCLE = [sys.executable, "-m", "service.cli"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def _run(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environment = {
        **os.environ,
        "LIFECYCLE_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
        "LIFECYCLE_REDIS_URL": f"redis://:s3cret@127.0.0.1:{_closed_port()}/0",
        "LIFECYCLE_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    started = time.monotonic()
    done = subprocess.run([*LIFECYCLE, *args], env=environment, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def _one_clear_line(done: subprocess.CompletedProcess[str], setting: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if setting in line]
    assert len(lines) == 1, output
    assert lines[0].startswith("lifecycle: cannot reach"), lines[0]
    assert "s3cret" not in output
    for noise in ("kafka.conn", "kafka.client", "aiokafka", "WARNING", "ERROR"):
        assert noise not in output, output


@pytest.mark.parametrize(
    "command",
    [["worker"], ["generate", "--users", "5", "--days", "1"], ["bridge", "--from", "somewhere"]],
    ids=["worker", "generate", "bridge"],
)
def test_commands_without_kafka_name_the_bootstrap_setting(command: list[str], tmp_path: Path) -> None:
    done, took = _run(command, tmp_path)
    _one_clear_line(done, "LIFECYCLE_KAFKA_BOOTSTRAP")
    assert took < 30


@pytest.mark.parametrize(
    "command",
    [["audience", "export", "--state", "dead"], ["thresholds", "suggest"]],
    ids=["audience-export", "thresholds-suggest"],
)
def test_commands_without_redis_name_the_redis_setting(command: list[str], tmp_path: Path) -> None:
    done, took = _run(command, tmp_path)
    _one_clear_line(done, "LIFECYCLE_REDIS_URL")
    assert took < 30


def test_replay_without_a_broker_still_reports_the_files_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = {"event_id": "e1", "user_id": "u1", "type": "visit", "ts": "2024-01-01T00:00:00Z"}
    path.write_bytes(
        orjson.dumps(good) + b"\nnot json\n" + orjson.dumps({**good, "ts": "2090-01-01T00:00:00Z"})
    )
    done, took = _run(["replay", str(path)], tmp_path)
    _one_clear_line(done, "LIFECYCLE_KAFKA_BOOTSTRAP")
    assert "line 2" in done.stderr and "line 3" in done.stderr and "LIFECYCLE_MAX_FUTURE" in done.stderr
    assert took < 30


def test_verbose_shows_the_client_librarys_messages(tmp_path: Path) -> None:
    done, _ = _run(["--verbose", "generate", "--users", "5", "--days", "1"], tmp_path)
    assert done.returncode == 1
    assert "LIFECYCLE_KAFKA_BOOTSTRAP" in done.stderr
    assert "kafka" in done.stderr.replace("LIFECYCLE_KAFKA_BOOTSTRAP", "")
