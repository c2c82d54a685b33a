"""Throwaway RabbitMQ, Redis and PostgreSQL for the fault suite, and the faults done to them.

The fault tests stop, kill, freeze and wipe servers; the servers on the default ports
(5672, 6379, 5432) are a developer's own, and on a shared box other people's. So
``FaultServers.start`` runs one server of each kind on free ports, with its data, logs,
sockets and Erlang cookie under one temporary directory, and every operation here acts
only on a process it started (its own pid, its own RabbitMQ node name): nothing looks
servers up by name (no ``pgrep``), nothing talks to the default node. ``close`` stops
them and removes the directory.

Binaries: ``redis-server``; PostgreSQL's ``initdb`` and ``postgres`` (the newest
``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else ``PATH``), run as the
``postgres`` user when we are root (PostgreSQL refuses root); RabbitMQ's own scripts in
``/usr/lib/rabbitmq/bin`` (the ``/usr/sbin`` wrappers switch to the ``rabbitmq`` user and
the default node's home and cookie), as node ``ef-fault-<port>@localhost`` with no plugins.
``ThrowawayRabbitCluster`` joins three such nodes (one cookie, one temporary directory)
into a cluster for the failover test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = [
    "FaultServers",
    "ServerProcess",
    "ServerUnavailable",
    "ThrowawayPostgres",
    "ThrowawayRabbit",
    "ThrowawayRabbitCluster",
    "ThrowawayRedis",
    "find_binary",
    "free_port",
    "port_answers",
]

_WAIT_S = 120.0
_STOP_S = 60.0
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
_LEAN_ERL_ARGS = " +S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"


class ServerUnavailable(RuntimeError):
    """A throwaway server cannot be started on this machine (binary missing, no start)."""


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_port(port: int, up: bool, timeout_s: float = _WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while port_answers(port) != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still {'down' if up else 'up'} after {timeout_s}s")
        time.sleep(0.1)


def find_binary(name: str, *candidates: Path) -> str:
    """The first executable of ``candidates``, else ``name`` on ``PATH`` (else
    ``ServerUnavailable``)."""
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerUnavailable(f"{name} not found (install it to run the fault suite)")
    return found


class ServerProcess:
    """One server process started here; every signal goes to its pid and no other.

    Also the base of a Redis Cluster node (``tests/clusters.py``): ``port`` (else a free
    one) and ``log`` (else ``<root>/<kind>.out``) are for it."""

    kind = "server"

    def __init__(
        self,
        root: Path,
        disruptions: Counter[str],
        *,
        port: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.root = root
        self.port = free_port() if port is None else port
        self.disruptions = disruptions
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.kind}.out" if log is None else log

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
            )

    @property
    def pid(self) -> int:
        """The pid of the running server (the one this object started)."""
        if self.process is None or self.process.poll() is not None:
            raise ProcessLookupError(f"the throwaway {self.kind} is not running")
        return self.process.pid

    def running(self) -> bool:
        """True while the process started here lives (frozen counts as living)."""
        return self.process is not None and self.process.poll() is None

    def _wait_up(self, timeout_s: float = _WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not port_answers(self.port):
            if self.process is None or self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise ServerUnavailable(
                    f"the throwaway {self.kind} on port {self.port} exited at start:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"the throwaway {self.kind} on port {self.port} did not answer in {timeout_s}s"
                )
            time.sleep(0.1)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _end(self, signum: int, timeout_s: float = _STOP_S) -> None:
        """Send ``signum`` (its clean shutdown); SIGKILL if still there after ``timeout_s``."""
        if not self.running():
            return
        assert self.process is not None
        self._signal(signal.SIGCONT)  # a frozen server cannot shut down
        self._signal(signum)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        _wait_port(self.port, up=False, timeout_s=30)

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown) and reap it."""
        if self.running() and self.process is not None:
            self.process.kill()
            self.process.wait(30)

    def freeze(self) -> None:
        """SIGSTOP the server (its connections stay open, nothing answers)."""
        self.disruptions[f"{self.kind}_freeze"] += 1
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT (harmless when not stopped)."""
        if self.running():
            self._signal(signal.SIGCONT)

    def start(self) -> None:
        """Start the server and wait until it serves."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server cleanly (its data stays in its directory)."""
        raise NotImplementedError

    def ensure(self) -> None:
        """Resume it, and start it if it is not running."""
        self.resume()
        if not self.running():
            self.start()
        _wait_port(self.port, up=True)


class ThrowawayRedis(ServerProcess):
    """``redis-server`` without persistence: a restart brings it back empty."""

    kind = "redis"

    def __init__(self, root: Path, disruptions: Counter[str]) -> None:
        super().__init__(root, disruptions)
        self.binary = find_binary("redis-server")
        self.dir = root / "redis"
        self.dir.mkdir()

    @property
    def url(self) -> str:
        """The server's URL (database 0: the whole server is the test's)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it serves."""
        self._spawn([
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "", "--appendonly", "no", "--daemonize", "no",
        ])  # fmt: skip
        self._wait_up()

    def stop(self) -> None:
        """SIGTERM: with no save points, Redis exits without writing anything."""
        self._end(signal.SIGTERM)

    def restart_empty(self, down_s: float) -> None:
        """Stop, stay down ``down_s``, start again: every key is gone."""
        self.disruptions["redis_restart_empty"] += 1
        self.stop()
        time.sleep(down_s)
        self.start()


class ThrowawayPostgres(ServerProcess):
    """A cluster of its own (``initdb``), trust auth on 127.0.0.1, no fsync."""

    kind = "postgres"

    def __init__(self, root: Path, disruptions: Counter[str]) -> None:
        super().__init__(root, disruptions)
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
        bindir = bindirs[-1] if bindirs else _pg_config_bindir()
        self.initdb = find_binary("initdb", *([bindir / "initdb"] if bindir else []))
        self.postgres = find_binary("postgres", *([bindir / "postgres"] if bindir else []))
        self.home = root / "postgres"
        self.data = self.home / "data"
        self.home.mkdir()
        # PostgreSQL refuses to run as root; the cluster belongs to the postgres user
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            self.user = {"user": "postgres", "group": "postgres", "extra_groups": []}
            shutil.chown(self.home, "postgres", "postgres")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the server's ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """``initdb`` the data directory (once)."""
        done = subprocess.run(
            [self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, check=False, cwd=self.home,
            **self.user,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {done.stderr.strip()[-1500:]}")

    def start(self) -> None:
        """Start the server and wait until it serves."""
        self._spawn(
            [self.postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.home),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            cwd=self.home, **self.user,
        )  # fmt: skip
        self._wait_up()

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, the data stays."""
        self._end(signal.SIGINT)

    def fault_stop(self) -> None:
        """Stop it as a fault (counted for the sentinel check)."""
        self.disruptions["postgres_stop"] += 1
        self.stop()


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in bindir.parent.name.split(".") if p.isdigit())


def _pg_config_bindir() -> Path | None:
    if shutil.which("pg_config") is None:
        return None
    done = subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, timeout=30, check=False
    )
    return Path(done.stdout.strip()) if done.returncode == 0 else None


class ThrowawayRabbit(ServerProcess):
    """A RabbitMQ node of its own: name, ports, cookie, data, logs, no plugins.

    ``name`` (its directory under ``root``) and ``cookie`` let several nodes share a
    root and an Erlang cookie: the nodes of one ``ThrowawayRabbitCluster``.
    """

    kind = "rabbit"

    def __init__(
        self,
        root: Path,
        disruptions: Counter[str],
        name: str = "rabbit",
        cookie: str | None = None,
    ) -> None:
        super().__init__(root, disruptions)
        self.log = root / f"{name}.out"
        self.server = find_binary("rabbitmq-server", RABBIT_BIN / "rabbitmq-server")
        self.ctl_binary = find_binary("rabbitmqctl", RABBIT_BIN / "rabbitmqctl")
        self.node = f"ef-fault-{self.port}@localhost"
        base = root / name
        home = base / "home"
        home.mkdir(parents=True)
        cookie_file = home / ".erlang.cookie"
        cookie_file.write_text(cookie or secrets.token_hex(20).upper())
        cookie_file.chmod(0o400)
        config = base / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")
        env_file = base / "rabbitmq-env.conf"  # not the default node's /etc/rabbitmq one
        env_file.write_text("")
        self.env = {
            **os.environ,
            "HOME": str(home),  # where Erlang reads the cookie, for the node and rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # the start script then execs the VM instead of forking it: our pid is the VM's
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    @property
    def url(self) -> str:
        """The AMQP URL (guest from loopback, as on the default node)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <this node> ...`` (never the default node)."""
        return subprocess.run(
            [self.ctl_binary, "-n", self.node, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def start(self) -> None:
        """Boot the node (its data kept from a previous start) and wait until it serves."""
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Start booting the node (``wait_started`` waits for it: several boot at once)."""
        self._spawn([self.server], env=self.env, cwd=self.root)

    def wait_started(self) -> None:
        """Wait until the node booting serves AMQP and its broker is up."""
        self._wait_up()
        self.ctl("await_startup")

    def stop(self) -> None:
        """SIGTERM: the VM shuts the broker down cleanly."""
        self._end(signal.SIGTERM)

    def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: the node stays, the broker application stops."""
        self.disruptions["rabbit_stop_app"] += 1
        self.ctl("stop_app")
        _wait_port(self.port, up=False, timeout_s=60)

    def start_app(self) -> None:
        """``rabbitmqctl start_app`` and wait until AMQP answers."""
        self.ctl("start_app")
        self.ctl("await_startup")
        _wait_port(self.port, up=True)

    def hard_kill(self) -> None:
        """SIGKILL the node's VM (no clean shutdown)."""
        self.disruptions["rabbit_hard_kill"] += 1
        self.kill()
        _wait_port(self.port, up=False, timeout_s=30)

    def ensure(self) -> None:
        """Resume it, start its application or the node if either is down."""
        self.resume()
        if self.running() and not port_answers(self.port):
            self.start_app()
        super().ensure()


class ThrowawayRabbitCluster:
    """``size`` throwaway RabbitMQ nodes on 127.0.0.1 joined into one cluster.

    Each node is a ``ThrowawayRabbit`` (its own node name, AMQP and distribution ports,
    data and log directories, no plugins) under one temporary directory, all with one
    Erlang cookie; the others join the first with ``rabbitmqctl -n NODE join_cluster``.
    Never the default node. ``close`` stops them all and removes the directory.
    """

    def __init__(
        self, root: Path, size: int = 3, *, partition_handling: str = "", net_ticktime_s: int = 60
    ) -> None:
        self.root = root
        self.disruptions: Counter[str] = Counter()
        self.paused: set[str] = set()
        cookie = secrets.token_hex(20).upper()
        self.nodes = [
            ThrowawayRabbit(root, self.disruptions, name=f"rabbit{i + 1}", cookie=cookie)
            for i in range(size)
        ]
        for index, node in enumerate(self.nodes):
            # lean on a shared 2-core box: one scheduler each, no busy-waiting schedulers
            node.env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += _LEAN_ERL_ARGS
            if net_ticktime_s != 60:  # the VM's default; rabbitmqctl must use the same
                ticktime = f"-kernel net_ticktime {net_ticktime_s}"
                node.env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += f" {ticktime}"
                node.env["RABBITMQ_CTL_ERL_ARGS"] = ticktime
            if partition_handling:
                config = root / f"rabbit{index + 1}" / "rabbitmq.conf"
                with config.open("a") as out:
                    out.write(f"cluster_partition_handling = {partition_handling}\n")

    @classmethod
    def start(
        cls, size: int = 3, *, partition_handling: str = "", net_ticktime_s: int = 60
    ) -> ThrowawayRabbitCluster:
        """Boot the nodes (at once: each takes seconds on a busy box), join them, wait
        until every node runs in the cluster; everything removed again on failure.

        ``partition_handling`` (``cluster_partition_handling``) and ``net_ticktime_s``
        (the Erlang distribution's: how long a silent node takes to be counted down) are
        for the partition test."""
        root = Path(tempfile.mkdtemp(prefix="execflow-rabbit-cluster-"))
        cluster: ThrowawayRabbitCluster | None = None
        try:
            cluster = cls(
                root, size, partition_handling=partition_handling, net_ticktime_s=net_ticktime_s
            )
            for node in cluster.nodes:
                node.spawn()
            for node in cluster.nodes:
                node.wait_started()
            for node in cluster.nodes[1:]:
                cluster._join(node)
            cluster.wait_running(size)
        except BaseException:
            if cluster is not None:
                cluster.close()
            else:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _join(self, node: ThrowawayRabbit) -> None:
        first = self.nodes[0].node
        for args in (("stop_app",), ("join_cluster", first), ("start_app",), ("await_startup",)):
            done = node.ctl(*args)
            if done.returncode != 0:
                raise ServerUnavailable(
                    f"{node.node}: rabbitmqctl {' '.join(args)} failed: {done.stderr[-1500:]}"
                )
        _wait_port(node.port, up=True)

    @property
    def amqp_url(self) -> str:
        """Every node, in order, in one URL (the client fails over between them)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"amqp://guest:guest@{hosts}/"

    def living(self) -> list[ThrowawayRabbit]:
        """The nodes whose process runs, not paused, and whose AMQP port answers."""
        return [
            node
            for node in self.nodes
            if node.running() and node.node not in self.paused and port_answers(node.port)
        ]

    def pause(self, node: ThrowawayRabbit) -> None:
        """SIGSTOP one node (a partition as its peers and clients see it)."""
        self.paused.add(node.node)
        node.freeze()

    def resume(self, node: ThrowawayRabbit) -> None:
        """SIGCONT the node paused."""
        node.resume()
        self.paused.discard(node.node)

    def rabbitmqctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl`` against the first living node."""
        living = self.living()
        if not living:
            raise ServerUnavailable("no node of the throwaway cluster is running")
        return living[0].ctl(*args)

    def running_nodes(self) -> set[str]:
        """The node names the cluster reports running."""
        done = self.rabbitmqctl("cluster_status", "--formatter", "json")
        if done.returncode != 0:
            return set()
        return set(json.loads(done.stdout).get("running_nodes", []))

    def wait_running(self, count: int, timeout_s: float = _WAIT_S) -> None:
        """Wait until ``count`` nodes run in the cluster."""
        deadline = time.monotonic() + timeout_s
        while len(self.running_nodes()) < count:
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the cluster did not reach {count} running nodes")
            time.sleep(0.5)

    def leaders(self, prefix: str) -> dict[str, str]:
        """Queue name -> node name of its leader, for the queues named ``{prefix}.*``."""
        done = self.rabbitmqctl("-q", "--no-table-headers", "list_queues", "name", "leader")
        out = {}
        for line in done.stdout.splitlines():
            name, _, leader = line.strip().partition("\t")
            if name.startswith(prefix + "."):
                out[name] = leader.strip()
        return out

    def node_named(self, name: str) -> ThrowawayRabbit:
        """The node called ``name`` (``ef-fault-PORT@localhost``)."""
        return next(node for node in self.nodes if node.node == name)

    def close(self) -> None:
        """Kill every node (their data is thrown away with them) and remove the directory."""
        for node in self.nodes:
            node.resume()
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class FaultServers:
    """The three throwaway servers of a fault session, under one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.disruptions: Counter[str] = Counter()
        self.redis = ThrowawayRedis(root, self.disruptions)
        self.postgres = ThrowawayPostgres(root, self.disruptions)
        self.rabbit = ThrowawayRabbit(root, self.disruptions)

    @classmethod
    def start(cls) -> FaultServers:
        """Create the directory, start the three servers; all removed again on failure."""
        # not under pytest's basetemp: that is 0700 root, and PostgreSQL runs as postgres
        root = Path(tempfile.mkdtemp(prefix="execflow-faults-"))
        root.chmod(0o711)
        servers: FaultServers | None = None
        try:
            servers = cls(root)
            servers.postgres.init()
            for server in servers.all():
                server.start()
        except BaseException:
            if servers is not None:
                servers.close()
            else:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return servers

    def all(self) -> tuple[ServerProcess, ...]:
        """The three servers."""
        return (self.postgres, self.redis, self.rabbit)

    @property
    def amqp_url(self) -> str:
        """The throwaway broker."""
        return self.rabbit.url

    @property
    def redis_url(self) -> str:
        """The throwaway state store."""
        return self.redis.url

    def rabbitmqctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl`` against the throwaway node."""
        return self.rabbit.ctl(*args)

    def ensure(self) -> None:
        """Whatever a test did, the three servers run and answer again (idempotent)."""
        for server in self.all():
            server.ensure()

    def close(self) -> None:
        """Stop the servers and remove their directory."""
        for server in self.all():
            with contextlib.suppress(Exception):
                server.stop()
            server.kill()
        shutil.rmtree(self.root, ignore_errors=True)
