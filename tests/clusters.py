"""A throwaway Redis Cluster (3 masters with one replica each by default), started here.

Six ``redis-server`` processes on free ports of their own (client port and cluster-bus
port both picked here, never 6379), each with its own data directory under one temporary
directory, no persistence, ``cluster-node-timeout`` 2000 ms so a replica takes over a
killed master in a few seconds. ``redis-cli --cluster create ... --cluster-replicas 1``
joins them. Every signal goes to a pid started here and no other; ``close`` kills them
all and removes the directory.

``start(masters=, replicas=)`` makes other shapes (``bench/cluster_bench.py`` measures 1, 2
and 3 masters): ``redis-cli --cluster create`` refuses fewer than 3 masters, so 1 or 2 are
joined by hand (slots assigned, ``CLUSTER MEET``, ``CLUSTER REPLICATE``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.faults.services import ServerProcess, ServerUnavailable, find_binary, free_port

__all__ = ["ClusterNodeProcess", "RedisClusterServers"]

NODE_TIMEOUT_MS = 2000
_SLOTS = 16384
_WAIT_S = 60.0


class ClusterNodeProcess(ServerProcess):
    """One ``redis-server`` of the cluster: its client and bus ports, its directory (data,
    ``nodes.conf``, ``server.out``) and its process (started, signalled and killed as any
    throwaway server's, ``ServerProcess``)."""

    kind = "redis-cluster-node"

    def __init__(
        self, directory: Path, disruptions: Counter[str], port: int, bus_port: int
    ) -> None:
        super().__init__(directory, disruptions, port=port, log=directory / "server.out")
        self.bus_port = bus_port
        self.dir = directory
        self.binary = find_binary("redis-server")

    def __repr__(self) -> str:
        return f"ClusterNodeProcess({self.address}, bus {self.bus_port})"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart, keeping its ``nodes.conf``) and wait until it answers."""
        self._spawn(
            [self.binary, "--port", str(self.port), "--cluster-port", str(self.bus_port),
             "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--cluster-replica-validity-factor", "0"],
        )  # fmt: skip
        self._wait_up(_WAIT_S)

    def stop(self) -> None:
        """SIGTERM: with no save points, the node exits without writing its data."""
        self._end(signal.SIGTERM)


class RedisClusterServers:
    """Start, inspect, break and stop the six nodes (see the module doc)."""

    def __init__(self, root: Path, masters: int = 3, replicas: int = 1) -> None:
        self.root = root
        self.masters_wanted = masters
        self.replicas = replicas
        self.cli = find_binary("redis-cli")
        self.disruptions: Counter[str] = Counter()
        used: set[int] = set()
        self.nodes: list[ClusterNodeProcess] = []
        for index in range(masters * (1 + replicas)):
            port, bus_port = self._two_ports(used)
            directory = root / f"node{index}"
            directory.mkdir()
            self.nodes.append(ClusterNodeProcess(directory, self.disruptions, port, bus_port))

    @staticmethod
    def _two_ports(used: set[int]) -> tuple[int, int]:
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port()
            if port not in used:
                used.add(port)
                ports.append(port)
        return ports[0], ports[1]

    @classmethod
    def start(cls, masters: int = 3, replicas: int = 1) -> RedisClusterServers:
        """``masters`` x (1 + ``replicas``) nodes, joined, every slot served, replicas in sync."""
        root = Path(tempfile.mkdtemp(prefix="execflow-rcluster-"))
        cluster: RedisClusterServers | None = None
        try:
            cluster = cls(root, masters, replicas)
            for node in cluster.nodes:
                cluster.start_node(node)
            if masters >= 3:
                cluster._create()
            else:
                cluster._join_by_hand()
            cluster.wait_healthy()
        except BaseException:
            if cluster is not None:
                cluster.close()
            else:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    @property
    def url(self) -> str:
        """The state URL of the cluster (every node a startup node)."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start_node(self, node: ClusterNodeProcess) -> None:
        """Start (or restart, keeping its ``nodes.conf``) one node and wait until it answers."""
        node.start()

    def _create(self) -> None:
        done = subprocess.run(
            [self.cli, "--cluster", "create", *(n.address for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerUnavailable(f"redis-cli --cluster create failed: {done.stdout[-2000:]}")

    def redis_cli(self, node: ClusterNodeProcess, *args: str) -> str:
        """``redis-cli -p <node's port> args...`` (empty text when the node does not answer)."""
        try:
            done = subprocess.run(
                [self.cli, "-h", "127.0.0.1", "-p", str(node.port), *args],
                capture_output=True, text=True, timeout=5, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:  # a paused node accepts, then never answers
            return ""
        return done.stdout if done.returncode == 0 else ""

    def info(self, node: ClusterNodeProcess, *args: str) -> dict[str, str]:
        """``key:value`` lines of ``CLUSTER INFO`` / ``INFO <section>`` as a dict."""
        text = self.redis_cli(node, *args)
        pairs = (line.strip().split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def role(self, node: ClusterNodeProcess) -> str:
        """``master`` or ``slave`` (empty when the node does not answer)."""
        return self.info(node, "INFO", "replication").get("role", "")

    def masters(self) -> list[ClusterNodeProcess]:
        """The running nodes that are masters now."""
        return [n for n in self.nodes if n.running() and self.role(n) == "master"]

    def healthy(self) -> bool:
        """Every running node says ``cluster_state:ok``, every master there, replicas in sync."""
        running = [n for n in self.nodes if n.running()]
        if not running:
            return False
        for node in running:
            if self.info(node, "CLUSTER", "INFO").get("cluster_state") != "ok":
                return False
            replication = self.info(node, "INFO", "replication")
            role = replication.get("role")
            if role == "slave" and replication.get("master_link_status") != "up":
                return False
        return len(self.masters()) == self.masters_wanted

    def _join_by_hand(self) -> None:
        """Slots split over the first ``masters_wanted`` nodes, all met, the rest replicas."""
        masters = self.nodes[: self.masters_wanted]
        share = _SLOTS // len(masters)
        for index, node in enumerate(masters):
            last = _SLOTS - 1 if index == len(masters) - 1 else (index + 1) * share - 1
            self._ok(node, "CLUSTER", "ADDSLOTSRANGE", str(index * share), str(last))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self._ok(first, "CLUSTER", "MEET", "127.0.0.1", str(node.port), str(node.bus_port))
        deadline = time.monotonic() + _WAIT_S
        while not all(self._knows_all(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise ServerUnavailable("the cluster nodes did not meet")
            time.sleep(0.1)
        for index, node in enumerate(self.nodes[len(masters) :]):
            master_id = self.redis_cli(masters[index % len(masters)], "CLUSTER", "MYID").strip()
            self._ok(node, "CLUSTER", "REPLICATE", master_id)

    def _ok(self, node: ClusterNodeProcess, *args: str) -> None:
        reply = self.redis_cli(node, *args).strip()
        if reply != "OK":
            raise ServerUnavailable(f"{' '.join(args)} on {node.address} answered {reply!r}")

    def _knows_all(self, node: ClusterNodeProcess) -> bool:
        lines = self.redis_cli(node, "CLUSTER", "NODES").splitlines()
        settled = [line for line in lines if "handshake" not in line and "noaddr" not in line]
        return len(settled) == len(self.nodes)

    def wait_healthy(self, timeout_s: float = _WAIT_S) -> float:
        """Wait until ``healthy()``; the seconds it took (``TimeoutError`` past ``timeout_s``)."""
        started = time.monotonic()
        while not self.healthy():
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the Redis Cluster is not healthy after {timeout_s} s")
            time.sleep(0.2)
        return time.monotonic() - started

    def kill(self, node: ClusterNodeProcess) -> None:
        """``kill -9`` one node started here."""
        node.kill()

    def pause(self, node: ClusterNodeProcess) -> None:
        """SIGSTOP one node started here: its sockets stay open, nothing answers."""
        node.freeze()

    def resume(self, node: ClusterNodeProcess) -> None:
        """SIGCONT (harmless when not stopped)."""
        node.resume()

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """The running node that replicates ``master`` (its successor should it fail)."""
        for node in self.nodes:
            replication = self.info(node, "INFO", "replication")
            if node.running() and replication.get("master_port") == str(master.port):
                return node
        raise LookupError(f"no replica of {master.address}")

    def calls(self, node: ClusterNodeProcess, command: str) -> int:
        """How many times clients ran ``command`` on ``node`` (``INFO commandstats``; what
        a replica applies from its master is not counted: scripts replicate as effects)."""
        stats = self.info(node, "INFO", "commandstats").get(f"cmdstat_{command.lower()}", "")
        fields = dict(part.split("=", 1) for part in stats.split(",") if "=" in part)
        return int(fields.get("calls", "0"))

    def replaced(self, node: ClusterNodeProcess) -> bool:
        """True when ``node``'s slots have a new master: without it, every master wanted answers
        as one and says ``cluster_state:ok`` (``node`` may be paused: it is not asked)."""
        others = [n for n in self.nodes if n is not node and n.running()]
        masters = [n for n in others if self.role(n) == "master"]
        return len(masters) == self.masters_wanted and all(
            self.info(n, "CLUSTER", "INFO").get("cluster_state") == "ok" for n in masters
        )

    def wait_replaced(self, node: ClusterNodeProcess, timeout_s: float = _WAIT_S) -> float:
        """Wait until ``replaced(node)``; the seconds it took."""
        started = time.monotonic()
        while not self.replaced(node):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{node.address} was not replaced after {timeout_s} s")
            time.sleep(0.2)
        return time.monotonic() - started

    def restore(self) -> None:
        """Restart every killed node (it rejoins as a replica) and wait until healthy."""
        for node in self.nodes:
            self.resume(node)
            if not node.running():
                self.start_node(node)
        self.wait_healthy()

    def close(self) -> None:
        """Kill the six processes started here and remove their directory."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.resume()
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
