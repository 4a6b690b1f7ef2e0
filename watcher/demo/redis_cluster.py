"""Start and stop a throwaway Redis Cluster on loopback: masters, optional replicas (tests, bench).

Each node is a :class:`RedisServer` with ``cluster-enabled yes`` in its own
directory; ``redis-cli --cluster create`` spreads the 16,384 slots over the
masters and attaches the replicas. A short ``cluster-node-timeout`` (1 s)
lets a replica take over a killed master within a few seconds.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from types import TracebackType

from watcher.demo.redis_server import RedisServer, RedisServerError, free_port

NODE_TIMEOUT_MS = 1000


class RedisClusterServers:
    """``masters`` masters with ``replicas`` replicas each, all on 127.0.0.1."""

    def __init__(self, masters: int = 3, replicas: int = 0, *, appendonly: bool = False) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # A replica may take over however long it was cut off: this is a test rig.
            "--cluster-replica-validity-factor",
            "0",
        )
        self.masters = masters
        self.replicas = replicas
        self.nodes = [
            RedisServer(appendonly=appendonly, extra_args=args)
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """A redis:// URL of one node (the cluster client finds the others)."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, create the cluster and wait until every slot is served."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisServerError("redis-cli is not on PATH (apt-get install -y redis-server)")
        for node in self.nodes:
            if not node.port:
                node.port = free_cluster_port()
            node.start()
        create = [
            cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            self.close()
            raise RedisServerError(
                f"redis-cli --cluster create failed: {done.stdout.decode()[-500:]}"
            )
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node says ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state(n) == "ok" for n in self.live_nodes()):
                return
            time.sleep(0.1)
        raise RedisServerError(f"the cluster was not ok within {timeout} s")

    def live_nodes(self) -> list[RedisServer]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.running]

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave``, as the node says."""
        return _info(node.port, "replication").get("role", "?")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every replica has taken what its master had written when this was called."""
        targets = {}
        for node in self.live_nodes():
            info = _info(node.port, "replication")
            if info.get("role") == "master":
                targets[node.port] = int(info.get("master_repl_offset", "0"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._caught_up(port, offset) for port, offset in targets.items()):
                return
            time.sleep(0.05)
        raise RedisServerError(f"replicas did not catch up within {timeout} s")

    def _caught_up(self, port: int, offset: int) -> bool:
        info = _info(port, "replication")
        replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
        if len(replicas) < self.replicas:
            return False
        for replica in replicas:
            fields = dict(p.split("=", 1) for p in replica.split(",") if "=" in p)
            if fields.get("state") != "online" or int(fields.get("offset", -1)) < offset:
                return False
        return True

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node, as a crash would."""
        node.kill()

    @staticmethod
    def _state(node: RedisServer) -> str:
        return _command(node.port, b"CLUSTER INFO").split("cluster_state:", 1)[-1][:2]

    def close(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# A node also listens on its port + 10000 (the cluster bus).
BUS_OFFSET = 10000


def free_cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            port = 20000 + port % 30000
        if _free(port) and _free(port + BUS_OFFSET):
            return port
    raise RedisServerError("no free pair of loopback ports for a cluster node")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _command(port: int, command: bytes) -> str:
    """One inline command to a node; the reply as text ('' if the node does not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(command + b"\r\n")
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                header, _, body = data.partition(b"\r\n")
                if header.startswith(b"$") and len(body) >= int(header[1:]):
                    break
                if header.startswith((b"+", b"-")):
                    break
            return data.decode(errors="replace")
    except OSError:
        return ""


def _info(port: int, section: str) -> dict[str, str]:
    text = _command(port, f"INFO {section}".encode())
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v for k, v in pairs}
