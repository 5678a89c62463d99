"""Real local processes for development, the demo and tests: no Docker, no mocks.

Each server (`service.dev.redis_server`, `service.dev.kafka_broker`) runs one child
process on free loopback ports, with its output in a log file in the given work dir.
`start()` returns only once the process really serves requests (PING answers, Kafka
metadata comes back from *this* process: a reused port must not pass for a started
broker) and raises `StartupError` with the log tail otherwise. `stop()` is SIGTERM then
SIGKILL after a grace period; `kill()` is the crash for crash tests. Children run in
their own session, so Ctrl-C reaches the parent only and it stops them in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TypeVar

_T = TypeVar("_T")
CLUSTER_BUS_OFFSET = 10_000  # a Redis Cluster node also listens on its port + 10000


class EmbeddedError(RuntimeError):
    """Base class for everything this module raises about its processes."""


class MissingDependency(EmbeddedError):
    """A binary or the Kafka jars are not installed; the message says how to get them."""


class StartupError(EmbeddedError):
    """A process exited or did not become ready in time; the message ends with its log tail."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for ports it hands out itself (outgoing connections, port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_cluster_port() -> int:
    """A free port for a Redis Cluster node whose bus port (+10000) is free too.

    Both lie below the ephemeral range, where `free_port()` and outgoing connections take
    theirs, so another server of the same test run cannot land on the bus port between
    this check and the node's start.
    """
    import random

    highest = ephemeral_ports()[0] - CLUSTER_BUS_OFFSET - 1
    for _ in range(200):
        port = random.randint(10_000, highest)
        try:
            for p in (port, port + CLUSTER_BUS_OFFSET):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise EmbeddedError("no free port pair for a Redis Cluster node")


def wait_for(predicate: Callable[[], _T], timeout: float, what: str, interval: float = 0.1) -> _T:
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def cache_dir() -> Path:
    """Where downloads are kept across runs: `$LIFECYCLE_CACHE_DIR` or ~/.cache/lifecycle."""
    return Path(os.environ.get("LIFECYCLE_CACHE_DIR") or Path.home() / ".cache" / "lifecycle")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess(ABC):
    """One child process with a log file, readiness probing and signal-based stopping."""

    name: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0
    stop_grace: ClassVar[float] = 10.0

    def __init__(self, workdir: Path | str, port: int | None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        #: Seconds the last `start()` took until ready (including any preparation).
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def _ready(self) -> bool:
        """Whether the process serves requests; must not raise on connection errors."""

    def _prepare(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Write configuration and initialise state before the process starts."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start the process and block until it is ready; a no-op if it already runs."""
        if self.running:
            return self
        timeout = self.start_timeout if timeout is None else timeout
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name} ----\n".encode())
            log.flush()
            self._prepare()
            # The child keeps its own copy of the descriptor; ours closes with the block.
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(self._probe, timeout, f"{self.name} on 127.0.0.1:{self.port}")
        except TimeoutError as exc:
            self.kill()
            raise StartupError(f"{exc}; see {self.log_path}:\n{self.log_tail()}") from None
        except BaseException:
            self.kill()  # e.g. Ctrl-C, which the child in its own session never sees
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _probe(self) -> bool:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise StartupError(
                f"{self.name} exited with code {code} during startup; see {self.log_path}:\n{self.log_tail()}"
            )
        return self._ready()

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        try:
            self._wait(self.stop_grace if grace is None else grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown hooks, no final flush."""
        if self.running:
            self._signal(signal.SIGKILL)
            self._wait(10)

    def restart(self, timeout: float | None = None) -> Self:
        """Graceful stop and start on the same port(s) and work dir."""
        self.stop()
        return self.start(timeout)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile
            os.killpg(self._proc.pid, sig)  # its own session: any children go too

    def _wait(self, timeout: float) -> None:
        assert self._proc is not None
        self._proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log file)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} 127.0.0.1:{self.port} {state}>"
