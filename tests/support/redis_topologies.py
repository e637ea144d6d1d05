"""Real Redis Cluster and Sentinel deployments for tests, started on free loopback ports.

`redis_cluster()` starts six `redis-server --cluster-enabled yes` processes and joins them
with `redis-cli --cluster create` (three masters, one replica each); `redis_sentinel()` starts
a master, a replica and three `redis-server --sentinel` processes watching it. Both wait until
the deployment answers, hand back a handle that can kill a node (for failovers), and stop
every process on the way out. Without `redis-server`/`redis-cli` they skip, or fail under
HERA_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.polling import wait_until
from tests.support.services import free_port, unavailable

START_SECONDS = 20.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install redis-server)")
    assert path is not None
    return path


@dataclass
class RedisNode:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: the node is gone at once, as a crashed machine would be."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _start(directory: Path, port: int, *args: str) -> RedisNode:
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "redis.log").open("wb")
    command = [_binary("redis-server"), *args, "--port", str(port), "--bind", "127.0.0.1"]
    # `--save ""` is how redis-server's command line spells "no snapshots" (an empty value)
    command += ["--dir", str(directory), "--save", "''", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    log.close()
    return RedisNode(port, process)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------ Cluster
@dataclass
class ClusterHandle:
    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        """Any node will do: the client learns the others from it."""
        return f"redis://{self.nodes[0].address}/0"

    def masters(self) -> list[RedisNode]:
        return [node for node in self.nodes if self._role(node) == "master"]

    def replicas(self) -> list[RedisNode]:
        return [node for node in self.nodes if self._role(node) == "slave"]

    def master_of(self, key: str) -> RedisNode:
        """The node that serves `key`'s slot now."""
        for node in self.nodes:
            if node.process.poll() is not None:
                continue
            with node.client() as client:
                slot = int(client.execute_command("CLUSTER KEYSLOT", key))
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    @staticmethod
    def _role(node: RedisNode) -> str:
        if node.process.poll() is not None:
            return "dead"
        with node.client() as client:
            role = client.execute_command("ROLE")[0]
        return _text(role)

    def healthy(self) -> bool:
        """Every live node says the cluster is ok and all 16384 slots are served."""
        for node in self.nodes:
            if node.process.poll() is not None:
                continue
            try:
                with node.client() as client:
                    info = client.execute_command("CLUSTER INFO")
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                return False
            if isinstance(info, bytes | str):  # raw text, or parsed by redis-py into a dict
                text = info.decode() if isinstance(info, bytes) else info
                info = dict(line.split(":", 1) for line in text.split() if ":" in line)
            fields = {_text(k): _text(v) for k, v in info.items()}
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
                return False
        return True


@contextmanager
def redis_cluster(directory: Path, *, node_timeout_ms: int = 1000) -> Iterator[ClusterHandle]:
    """Three masters and three replicas; a master's failure is noticed within about a
    second (`cluster-node-timeout`) and its replica promoted."""
    cli = _binary("redis-cli")
    with ExitStack() as stack:
        nodes: list[RedisNode] = []
        for _ in range(6):
            port = free_port()
            node = _start(
                directory / str(port),
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                # The bus defaults to port + 10000, past 65535 for a high free port.
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-replica-validity-factor", "0",
            )  # fmt: skip
            stack.callback(node.stop)
            nodes.append(node)
        for node in nodes:
            wait_until(node.answers, within=START_SECONDS, what=f"redis {node.port}", setup=True)
        create = [cli, "--cluster", "create", *(n.address for n in nodes)]
        created = subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]!r}")
        handle = ClusterHandle(nodes)
        wait_until(handle.healthy, within=START_SECONDS, what="the cluster", setup=True)
        wait_until(
            lambda: len(handle.replicas()) == 3,
            within=START_SECONDS,
            what="the replicas to attach",
            setup=True,
        )
        yield handle


# ------------------------------------------------------------------------------ Sentinel
@dataclass
class SentinelHandle:
    master_name: str
    master: RedisNode
    replica: RedisNode
    sentinels: list[RedisNode] = field(default_factory=list)

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(s.address for s in self.sentinels)

    def current_master_port(self) -> int | None:
        for sentinel in self.sentinels:
            if sentinel.process.poll() is not None:
                continue
            try:
                with sentinel.client() as client:
                    host_port = client.execute_command(
                        "SENTINEL", "get-master-addr-by-name", self.master_name
                    )
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                continue
            if host_port:
                return int(host_port[1])
        return None


@contextmanager
def redis_sentinel(directory: Path, *, master_name: str = "hera") -> Iterator[SentinelHandle]:
    """A master, one replica, and three sentinels (quorum 2) that declare a silent master
    down after one second and promote the replica."""
    with ExitStack() as stack:
        master_port = free_port()
        master = _start(directory / "master", master_port)
        stack.callback(master.stop)
        wait_until(master.answers, within=START_SECONDS, what="the master", setup=True)
        replica_port = free_port()
        replica = _start(
            directory / "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port)
        )
        stack.callback(replica.stop)
        wait_until(replica.answers, within=START_SECONDS, what="the replica", setup=True)
        handle = SentinelHandle(master_name, master, replica)
        for index in range(3):
            port = free_port()
            folder = directory / f"sentinel{index}"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"
            config.write_text(
                f"sentinel monitor {master_name} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {master_name} 1000\n"
                f"sentinel failover-timeout {master_name} 5000\n"
                f"sentinel parallel-syncs {master_name} 1\n"
            )
            log = (folder / "sentinel.log").open("wb")
            process = subprocess.Popen(
                [
                    _binary("redis-server"),
                    str(config),
                    "--sentinel",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
            log.close()
            sentinel = RedisNode(port, process)
            stack.callback(sentinel.stop)
            handle.sentinels.append(sentinel)
        for sentinel in handle.sentinels:
            wait_until(sentinel.answers, within=START_SECONDS, what="a sentinel", setup=True)
        wait_until(
            lambda: handle.current_master_port() == master_port,
            within=START_SECONDS,
            what="the sentinels to agree on the master",
            setup=True,
        )

        def replicated() -> bool:
            with replica.client() as client:
                info = client.info("replication")
            return info.get("master_link_status") == "up"

        wait_until(replicated, within=START_SECONDS, what="the replica to sync", setup=True)
        yield handle
