"""The distributed pipeline on Redis Clusters of 1, 2 and 3 masters and on quorum vs
classic queues, in one run: reports/s and CPU per report summed over every process.

    python bench/cluster_bench.py                          # 1500 reports per pass
    python bench/cluster_bench.py --reports 500 --masters 1,3
    python bench/cluster_bench.py --reports 600 --masters "" --rabbit-nodes 1,3

Each pass is ``execflow bench``'s distributed max-rate pass (``apps.bench.distributed_pass``:
dispatcher, worker open and db writer as ``execflow run`` processes, the local RabbitMQ
and PostgreSQL, unique queue and key prefixes, one throwaway database for the run):

* ``single, quorum``: the default Redis (6379, db 15), quorum queues: the baseline;
* ``single, classic``: the same with ``EXECFLOW_QUEUE_TYPE=classic``;
* ``own single, quorum``: a ``redis-server`` of its own (free port, no persistence,
  ``tests/faults/services.py``), quorum queues;
* ``cluster N, quorum``: a Redis Cluster of N masters with ``--replicas`` replicas each,
  started here on free ports under a temporary directory (``tests/clusters.py``) and
  stopped after its pass; the store waits for one replica per commit (its default);
* with ``--rabbit-nodes N[,M...]``, ``rabbit N, quorum`` and ``rabbit N, classic``: a
  RabbitMQ cluster of N nodes started here (``tests/faults/services.py``'s
  ``ThrowawayRabbitCluster``: own node names, ports and data directories, never the
  default node), the pipeline's broker URL every node of it, a ``redis-server`` of its
  own per pass; both passes on the one cluster, killed after them. ``rabbit 1`` is one
  such node: the same lean VM and nobody else's traffic, which the default node is not.

CPU per report is the user + system CPU time (psutil) every process spent from the first
fill published until every report is applied and its event is in the database, divided
by the reports: the three pipeline processes, the Redis server (a cluster's masters in
``redis``, its replicas in ``replicas``), RabbitMQ's ``beam.smp`` (a cluster's N nodes
summed, and per node below the tables) and PostgreSQL (``apps.cputime``).
The default Redis, RabbitMQ and PostgreSQL are shared: what other clients make them do
during a pass is counted too. So the Redis side is also measured on servers nobody else
uses: ``own single, quorum`` (a ``redis-server`` started here) and the clusters. Before
each pass's fills (processes up, orders placed) every group is sampled idle for
``--idle`` seconds; the second table takes the idle rate of the servers started here
(Redis, and a RabbitMQ cluster's nodes) times the pass's duration off (their timers, a
cluster's pings and heartbeats: a fixed cost per second that a slow pass on a loaded
machine would otherwise charge to its reports). Ratios are to the
baseline of the same run. Figures: docs/benchmarks.md ("Redis Cluster and queue types")
and docs/cluster.md ("Scale, measured").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import typer

# the throwaway Redis Cluster is the tests' (tests/clusters.py), as bench/soak.py uses theirs
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.clusters import RedisClusterServers
from tests.faults.services import ThrowawayRabbitCluster, ThrowawayRedis

from execflow.apps.bench import (
    DEFAULT_AMQP_URL,
    DEFAULT_POSTGRES_ADMIN_URL,
    DEFAULT_REDIS_URL,
    BenchConfig,
    RunFigures,
    bench_database,
    distributed_pass,
)

PIPELINE = ("dispatcher", "worker_open", "db_writer")
SERVERS = ("redis", "redis_replicas", "rabbitmq", "postgresql")
OWN = ("redis", "redis_replicas")
"""The groups of the servers a pass with ``Setup.own`` started (nobody else uses them)."""
COLUMNS = (
    ("pass", 20),
    ("reports", 8),
    ("reports/s", 10),
    ("CPU ms/rep", 11),
    ("pipeline", 9),
    ("redis", 7),
    ("replicas", 9),
    ("rabbitmq", 9),
    ("postgresql", 11),
    ("CPU x base", 11),
    ("rate x base", 12),
)


@dataclass(frozen=True, slots=True)
class Setup:
    """One pass: the state store and the queue type.

    ``masters`` 0 is one Redis: the default one, or (``own``) one started here.
    ``rabbit_nodes`` 0 is the default RabbitMQ node; N a cluster of N nodes started here
    (with a Redis of its own: ``own`` is implied).
    """

    masters: int
    queue_type: str
    own: bool = False
    rabbit_nodes: int = 0

    @property
    def label(self) -> str:
        """``single, quorum`` / ``own single, quorum`` / ``cluster 2, quorum`` /
        ``rabbit 3, classic``."""
        if self.rabbit_nodes:
            return f"rabbit {self.rabbit_nodes}, {self.queue_type}"
        store = f"cluster {self.masters}" if self.masters else "single"
        return f"{'own ' if self.own and not self.masters else ''}{store}, {self.queue_type}"

    @property
    def slug(self) -> str:
        """The label as a queue and key prefix part."""
        if self.rabbit_nodes:
            return f"r{self.rabbit_nodes}{self.queue_type[0]}"
        store = f"c{self.masters}" if self.masters else ("o" if self.own else "s")
        return f"{store}{self.queue_type[0]}"

    def groups(self, group: str) -> tuple[str, ...]:
        """The CPU groups a table column sums: a RabbitMQ cluster's ``rabbitmq`` is its
        nodes' groups (``rabbit_node_groups``), every other column its own group."""
        if group == "rabbitmq" and self.rabbit_nodes:
            return rabbit_node_groups(self.rabbit_nodes)
        return (group,)


def rabbit_node_groups(nodes: int) -> tuple[str, ...]:
    """``rabbitmq_node1`` ... : the CPU group of each node of a RabbitMQ cluster."""
    return tuple(f"rabbitmq_node{i}" for i in range(1, nodes + 1))


@dataclass(frozen=True, slots=True)
class Row:
    """A measured pass."""

    setup: Setup
    figures: RunFigures

    def cpu_ms(self, group: str | None = None, net: bool = False) -> float:
        """CPU ms per report: every process's, the pipeline's three, or one server's.

        ``net``: the servers started here (Redis, a RabbitMQ cluster's nodes) less their
        idle CPU rate over the pass (``RunFigures.net_cpu_ms_per_report``); a shared
        server's idle sample is other clients' traffic at that moment, not a background
        to take off. A RabbitMQ cluster's ``rabbitmq`` is its nodes' sum (``node``).
        """
        if group is None:
            return sum(self.cpu_ms(name, net) for name in ("pipeline", *SERVERS))
        if group == "pipeline":
            return sum(self.figures.cpu_ms_per_report(name) for name in PIPELINE)
        return sum(self.node_ms(name, net) for name in self.setup.groups(group))

    def node_ms(self, group: str, net: bool = False) -> float:
        """CPU ms per report of one measured group (one server, one cluster node)."""
        if net and self._started_here(group):
            return self.figures.net_cpu_ms_per_report(group)
        return self.figures.cpu_ms_per_report(group)

    def _started_here(self, group: str) -> bool:
        if group in OWN:
            return self.setup.own or bool(self.setup.rabbit_nodes)
        return group in rabbit_node_groups(self.setup.rabbit_nodes)

    def idle_ms_per_s(self, group: str) -> float:
        """CPU ms per second ``group`` spent idle before the pass (the pipeline's three, a
        RabbitMQ cluster's nodes summed)."""
        idle = dict(self.figures.idle_cpu_by_group)
        names = PIPELINE if group == "pipeline" else self.setup.groups(group)
        return sum(idle.get(name, 0.0) for name in names) * 1000


def setups(masters: Sequence[int], rabbit_nodes: Sequence[int] = ()) -> list[Setup]:
    """The baseline first, then classic queues, one Redis of our own, each cluster size,
    and for each of ``rabbit_nodes`` quorum then classic queues on a RabbitMQ cluster of
    that many nodes, last."""
    rabbit = [
        Setup(0, kind, own=True, rabbit_nodes=nodes)
        for nodes in rabbit_nodes
        for kind in ("quorum", "classic")
    ]
    return [
        Setup(0, "quorum"),
        Setup(0, "classic"),
        Setup(0, "quorum", own=True),
        *(Setup(m, "quorum", own=True) for m in masters),
        *rabbit,
    ]


def rabbit_settings(config: BenchConfig, cluster: ThrowawayRabbitCluster) -> BenchConfig:
    """``config`` on ``cluster``: its every node in the broker URL, each node's ``beam.smp``
    counted in its own group (``rabbit_node_groups``)."""
    nodes = zip(rabbit_node_groups(len(cluster.nodes)), cluster.nodes, strict=True)
    return replace(
        config,
        amqp_url=cluster.amqp_url,
        # ``rabbitmq`` with no pid: nothing found by the URL's port is counted besides
        server_pids=(("rabbitmq", ()), *((group, (node.pid,)) for group, node in nodes)),
    )


async def measure(
    config: BenchConfig,
    setup: Setup,
    replicas: int,
    database: tuple[str, str],
    workdir: Path,
    rabbit: ThrowawayRabbitCluster | None = None,
) -> Row:
    """One pass; a Redis cluster is started before it and stopped after it. ``rabbit``:
    the RabbitMQ cluster a ``setup.rabbit_nodes`` pass runs on."""
    config = replace(config, pass_settings=(("queue_type", setup.queue_type),))
    run_dir = workdir / setup.slug
    if setup.rabbit_nodes:
        assert rabbit is not None and len(rabbit.nodes) == setup.rabbit_nodes
        config = rabbit_settings(config, rabbit)
    if not setup.own:
        return Row(setup, await distributed_pass(config, database, run_dir, setup.slug))
    if not setup.masters:
        return await _on_own_redis(config, setup, database, run_dir)
    cluster = await asyncio.to_thread(RedisClusterServers.start, setup.masters, replicas)
    try:
        masters = {node.port for node in cluster.masters()}
        pids = {
            role: tuple(
                n.process.pid
                for n in cluster.nodes
                if n.process is not None and (n.port in masters) == (role == "redis")
            )
            for role in ("redis", "redis_replicas")
        }
        # no replica to wait for: a commit's WAIT would time out (docs/cluster.md)
        options = "?wait_replicas=0" if replicas == 0 else ""
        url = f"{cluster.url}/{options}"
        config = replace(config, redis_url=url, server_pids=(*config.server_pids, *pids.items()))
        return Row(setup, await distributed_pass(config, database, run_dir, setup.slug))
    finally:
        await asyncio.to_thread(cluster.close)


async def _on_own_redis(
    config: BenchConfig, setup: Setup, database: tuple[str, str], run_dir: Path
) -> Row:
    """One pass on a ``redis-server`` started here (its CPU is this pass's alone)."""
    root = Path(tempfile.mkdtemp(prefix="execflow-own-redis-"))
    server = ThrowawayRedis(root, Counter())
    try:
        await asyncio.to_thread(server.start)
        config = replace(
            config,
            redis_url=server.url,
            server_pids=(*config.server_pids, ("redis", (server.pid,))),
        )
        return Row(setup, await distributed_pass(config, database, run_dir, setup.slug))
    finally:
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(shutil.rmtree, root, True)


async def run(
    config: BenchConfig,
    masters: Sequence[int],
    replicas: int,
    rabbit_nodes: Sequence[int] = (),
) -> list[Row]:
    """Every pass, in one throwaway database; a RabbitMQ cluster is started for the first
    pass on it and killed after its last one (the next size's started then), also on a
    failure."""
    workdir = Path(tempfile.mkdtemp(prefix="execflow-cluster-bench-"))
    rows: list[Row] = []
    rabbit: ThrowawayRabbitCluster | None = None
    try:
        async with bench_database(config) as database:
            for setup in setups(masters, rabbit_nodes):
                size = setup.rabbit_nodes
                if size and (rabbit is None or len(rabbit.nodes) != size):
                    if rabbit is not None:
                        await asyncio.to_thread(rabbit.close)
                        rabbit = None
                    print(f"... starting a {size}-node RabbitMQ cluster", flush=True)
                    rabbit = await asyncio.to_thread(ThrowawayRabbitCluster.start, size)
                print(f"... {setup.label}", flush=True)
                rows.append(await measure(config, setup, replicas, database, workdir, rabbit))
    finally:
        if rabbit is not None:
            await asyncio.to_thread(rabbit.close)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return rows


def _line(cells: Sequence[str]) -> str:
    return "  ".join(
        f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
        for i, (cell, (_name, width)) in enumerate(zip(cells, COLUMNS, strict=True))
    )


def table(rows: Sequence[Row], net: bool = False) -> list[str]:
    """The figures, one line per pass, ratios to the first (the baseline)."""
    lines = [_line([name for name, _width in COLUMNS])]
    base = rows[0] if rows else None
    for row in rows:
        total = row.cpu_ms(net=net)
        cells = [
            row.setup.label,
            str(row.figures.reports),
            f"{row.figures.rate:.1f}",
            f"{total:.3f}",
            *(f"{row.cpu_ms(group, net):.3f}" for group in ("pipeline", *SERVERS)),
            _ratio(total, base.cpu_ms(net=net) if base else 0.0),
            _ratio(row.figures.rate, base.figures.rate if base else 0.0),
        ]
        lines.append(_line(cells))
    return lines


def idle_lines(rows: Sequence[Row]) -> list[str]:
    """Each pass's idle CPU rates (ms per s) and how long its CPU was counted."""
    out = ["idle before each pass, CPU ms per second (taken off the servers started here):"]
    for row in rows:
        rates = "  ".join(
            f"{group} {row.idle_ms_per_s(group):6.1f}" for group in ("pipeline", *SERVERS)
        )
        out.append(
            f"  {row.setup.label:<20} {rates}   counted over {row.figures.cpu_window_s:.1f} s"
        )
    return out


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "-"


def per_core(rows: Sequence[Row]) -> list[str]:
    """What one fully used core gives at each pass's net CPU per report."""
    out = ["reports/s per fully used core (1000 / net CPU ms per report):"]
    for row in rows:
        total, redis = row.cpu_ms(net=True), row.cpu_ms("redis", net=True)
        out.append(
            f"  {row.setup.label:<20} all processes {_per_core(total):>8}"
            f"   Redis masters alone {_per_core(redis):>8}"
        )
    return out


def rabbit_lines(rows: Sequence[Row], net: bool = True) -> list[str]:
    """RabbitMQ's CPU per report in each pass (a cluster's nodes summed, and each node),
    its ratio to the baseline's, and quorum / classic on each broker of the run."""
    if not rows:
        return []
    base = rows[0].cpu_ms("rabbitmq", net)
    out = [
        "RabbitMQ CPU ms per report (a cluster's nodes summed, net of their idle rate),"
        " x the baseline's:"
    ]
    for row in rows:
        rabbit = row.cpu_ms("rabbitmq", net)
        nodes = row.setup.groups("rabbitmq") if row.setup.rabbit_nodes else ()
        split = "  ".join(f"node{i} {row.node_ms(g, net):.3f}" for i, g in enumerate(nodes, 1))
        out.append(
            f"  {row.setup.label:<20} {rabbit:7.3f}  x{_ratio(rabbit, base):>5}"
            + (f"   ({split})" if split else "")
        )
    for label, quorum, classic in quorum_pairs(rows):
        out.append(
            f"quorum / classic, {label}: RabbitMQ"
            f" {_ratio(quorum.cpu_ms('rabbitmq', net), classic.cpu_ms('rabbitmq', net))},"
            f" all processes {_ratio(quorum.cpu_ms(net=net), classic.cpu_ms(net=net))},"
            f" reports/s {_ratio(quorum.figures.rate, classic.figures.rate)}"
        )
    return out


def quorum_pairs(rows: Sequence[Row]) -> list[tuple[str, Row, Row]]:
    """(broker, the quorum row, the classic row) for each broker measured with both:
    ``one node`` (the default RabbitMQ, the default Redis) and ``N-node cluster``."""
    by_setup = {row.setup: row for row in rows}
    out = []
    for row in rows:
        setup = row.setup
        classic = by_setup.get(replace(setup, queue_type="classic"))
        if setup.queue_type == "quorum" and classic is not None:
            nodes = setup.rabbit_nodes
            out.append((f"{nodes}-node cluster" if nodes else "one node", row, classic))
    return out


def _per_core(cpu_ms: float) -> str:
    return f"{1000 / cpu_ms:.0f}" if cpu_ms > 0 else "-"


def main(
    reports: int = typer.Option(1500, min=10, help="Fill reports per pass."),
    masters: str = typer.Option("1,2,3", help="Redis Cluster sizes (masters), comma-separated."),
    replicas: int = typer.Option(1, min=0, help="Replicas per master."),
    idle: float = typer.Option(15.0, min=0.5, help="Seconds of each pass's idle sample."),
    amqp_url: str = typer.Option(DEFAULT_AMQP_URL, help="RabbitMQ."),
    redis_url: str = typer.Option(DEFAULT_REDIS_URL, help="The single Redis (the baseline)."),
    postgres_admin_url: str = typer.Option(
        DEFAULT_POSTGRES_ADMIN_URL, help="PostgreSQL admin DSN (a database is created)."
    ),
    timeout: float = typer.Option(300.0, min=1, help="Upper bound of each pass (s)."),
    rabbit_nodes: str = typer.Option(
        "",
        help="Also run quorum and classic queues on RabbitMQ clusters of these sizes "
        "(nodes, comma-separated, e.g. 1,3) started here; none by default.",
    ),
) -> None:
    """Print reports/s and CPU per report for each pass, with ratios to the baseline."""
    sizes = [int(part) for part in masters.split(",") if part.strip()]
    config = BenchConfig(
        distributed_reports=reports,
        amqp_url=amqp_url,
        redis_url=redis_url,
        postgres_admin_url=postgres_admin_url,
        timeout_s=timeout,
        idle_sample_s=idle,
    )
    load_before = os.getloadavg()
    nodes = [int(part) for part in rabbit_nodes.split(",") if part.strip()]
    if any(n < 1 for n in nodes):
        raise typer.BadParameter(
            "RabbitMQ cluster sizes are 1 or more", param_hint="--rabbit-nodes"
        )
    rows = asyncio.run(run(config, sizes, replicas, nodes))
    load_after = os.getloadavg()
    print(f"{reports} reports per pass at max rate; clusters: {replicas} replica(s) per master")
    print("CPU ms per report as measured:")
    print("\n".join(table(rows)))
    print("CPU ms per report, the servers started here net of their idle rate:")
    print(
        "\n".join((*table(rows, net=True), *idle_lines(rows), *per_core(rows), *rabbit_lines(rows)))
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"(1/5/15 min) {'/'.join(f'{x:.2f}' for x in load_before)} before, "
        f"{'/'.join(f'{x:.2f}' for x in load_after)} after"
    )


if __name__ == "__main__":
    typer.run(main)
