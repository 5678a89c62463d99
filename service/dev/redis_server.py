"""Debian's `redis-server` as a local child process: one server, or a small Redis Cluster."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from service.dev.processes import (
    EmbeddedError,
    MissingDependency,
    ServerProcess,
    StartupError,
    free_cluster_port,
)


@dataclass(frozen=True)
class TlsFiles:
    """A server's TLS certificate, its private key and the CA that signed it (PEM files)."""

    cert: Path
    key: Path
    ca: Path


class RedisServer(ServerProcess):
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
                _start_node(node)
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


def _start_node(node: RedisServer, attempts: int = 5) -> None:
    """Start a cluster node, moving it to another free port pair while its ports are taken
    (another process may bind one between the choice and the start)."""
    for attempt in range(attempts):
        try:
            node.start()
            return
        except StartupError as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
            (node.workdir / "nodes.conf").unlink(missing_ok=True)
            node.port = free_cluster_port()
