"""``bench/cluster_bench.py`` at tiny counts with a 1-master cluster: every row, figures >= 0.

It runs on the default RabbitMQ, Redis and PostgreSQL (unique prefixes, a throwaway
database, all removed) and starts its own Redis and Redis Cluster on free ports. No
timing is asserted: every row is there, the rate, the total CPU and the pipeline's and
RabbitMQ's are positive, a server's may round to 0 at 20 reports (CPU time comes in
10 ms ticks), and the parts add up to the total.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from execflow.apps.bench import DEFAULT_AMQP_URL, BenchConfig, RunFigures, _server_pids

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("single, quorum", "single, classic", "own single, quorum", "cluster 1, quorum")


def _cluster_bench() -> ModuleType:
    """``bench/cluster_bench.py`` as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "cluster_bench", ROOT / "bench" / "cluster_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _figures(rabbit: dict[str, float], idle: dict[str, float]) -> RunFigures:
    """100 reports over 10 s: 1 s per pipeline process, 0.1 s Redis, 0.3 s PostgreSQL."""
    groups = {"dispatcher": 1.0, "worker_open": 1.0, "db_writer": 1.0, "redis": 0.1,
              "postgresql": 0.3, **rabbit}  # fmt: skip
    return RunFigures(
        reports=100, elapsed_s=9.0, p50_ms=0.0, p95_ms=0.0, p99_ms=0.0,
        cpu_s=sum(groups.values()), cpu_by_group=tuple(groups.items()), cpu_window_s=10.0,
        idle_cpu_by_group=tuple(idle.items()),
    )  # fmt: skip


def test_a_rabbitmq_clusters_column_is_its_three_nodes_summed_once() -> None:
    bench = _cluster_bench()
    setup = bench.Setup(0, "quorum", own=True, rabbit_nodes=3)
    assert setup.label == "rabbit 3, quorum"
    nodes = bench.rabbit_node_groups(3)
    assert nodes == ("rabbitmq_node1", "rabbitmq_node2", "rabbitmq_node3")
    # the pass's meter: "rabbitmq" given no pid (0 s), each node its beam.smp
    cpu = {"rabbitmq": 0.0, "rabbitmq_node1": 0.4, "rabbitmq_node2": 0.2, "rabbitmq_node3": 0.1}
    idle = {"rabbitmq_node1": 0.01, "rabbitmq_node2": 0.005, "redis": 0.001}
    row = bench.Row(setup, _figures(cpu, idle))
    assert row.cpu_ms("rabbitmq") == pytest.approx(7.0)  # 0.7 s / 100 reports
    assert row.node_ms("rabbitmq_node1") == pytest.approx(4.0)
    assert row.cpu_ms() == pytest.approx(30.0 + 1.0 + 7.0 + 3.0)
    assert row.cpu_ms() == pytest.approx(row.figures.cpu_ms_per_report())  # nothing twice
    # net: each node's idle rate over the 10 s window off (0.1 s, 0.05 s), the Redis
    # started for the pass too
    assert row.cpu_ms("rabbitmq", net=True) == pytest.approx(5.5)
    assert row.cpu_ms("redis", net=True) == pytest.approx(0.9)
    assert row.idle_ms_per_s("rabbitmq") == pytest.approx(15.0)
    # the shared default node: as measured, its idle sample is other clients' traffic
    shared = bench.Row(bench.Setup(0, "quorum"), _figures({"rabbitmq": 0.5}, {"rabbitmq": 0.02}))
    assert shared.cpu_ms("rabbitmq", net=True) == pytest.approx(5.0)
    assert shared.setup.groups("rabbitmq") == ("rabbitmq",)


def test_rabbit_passes_count_each_node_by_pid_and_nothing_by_port() -> None:
    bench = _cluster_bench()
    cluster = SimpleNamespace(
        nodes=[SimpleNamespace(pid=pid) for pid in (101, 102, 103)],
        amqp_url="amqp://guest:guest@127.0.0.1:5701,127.0.0.1:5702,127.0.0.1:5703/",
    )
    config = bench.rabbit_settings(BenchConfig(), cluster)
    assert config.amqp_url == cluster.amqp_url
    assert dict(config.server_pids) == {
        "rabbitmq": (),
        "rabbitmq_node1": (101,),
        "rabbitmq_node2": (102,),
        "rabbitmq_node3": (103,),
    }
    # no process found by a port is counted as "rabbitmq" besides the nodes
    assert "rabbitmq" not in _server_pids(config)
    assert "rabbitmq" in _server_pids(BenchConfig(amqp_url=DEFAULT_AMQP_URL))
    labels = [s.label for s in bench.setups([1], rabbit_nodes=[1, 3])]
    assert labels[-4:] == ["rabbit 1, quorum", "rabbit 1, classic", "rabbit 3, quorum",
                           "rabbit 3, classic"]  # fmt: skip
    assert len(bench.setups([1])) == 4


def test_rabbit_lines_give_quorum_over_classic_per_broker() -> None:
    bench = _cluster_bench()
    nodes = bench.rabbit_node_groups(3)

    def cluster_row(kind: str, per_node: float) -> object:
        setup = bench.Setup(0, kind, own=True, rabbit_nodes=3)
        return bench.Row(setup, _figures(dict.fromkeys(nodes, per_node), {}))

    rows = [
        bench.Row(bench.Setup(0, "quorum"), _figures({"rabbitmq": 0.4}, {})),
        bench.Row(bench.Setup(0, "classic"), _figures({"rabbitmq": 0.2}, {})),
        cluster_row("quorum", 0.4),
        cluster_row("classic", 0.1),
    ]
    pairs = [(label, q.setup.label, c.setup.label) for label, q, c in bench.quorum_pairs(rows)]
    assert pairs == [
        ("one node", "single, quorum", "single, classic"),
        ("3-node cluster", "rabbit 3, quorum", "rabbit 3, classic"),
    ]
    lines = bench.rabbit_lines(rows)
    assert (
        "  rabbit 3, quorum      12.000  x 3.00   (node1 4.000  node2 4.000  node3 4.000)" in lines
    )
    assert any(line.startswith("quorum / classic, one node: RabbitMQ 2.00,") for line in lines)
    assert any(
        line.startswith("quorum / classic, 3-node cluster: RabbitMQ 4.00,") for line in lines
    )


def test_net_cpu_takes_each_groups_idle_rate_over_the_window_off() -> None:
    figures = RunFigures(
        reports=100,
        elapsed_s=9.0,
        p50_ms=0.0,
        p95_ms=0.0,
        p99_ms=0.0,
        cpu_s=1.5,
        cpu_by_group=(("worker_open", 1.0), ("redis", 0.5)),
        cpu_window_s=10.0,
        idle_cpu_by_group=(("worker_open", 0.02), ("redis", 0.01)),
    )
    assert figures.cpu_ms_per_report("worker_open") == pytest.approx(10.0)
    # 0.02 CPU s per s over 10 s: 0.2 s of the 1.0 s was background
    assert figures.net_cpu_ms_per_report("worker_open") == pytest.approx(8.0)
    assert figures.net_cpu_ms_per_report("redis") == pytest.approx(4.0)
    assert figures.net_cpu_ms_per_report() == pytest.approx(12.0)
    assert figures.net_cpu_ms_per_report("postgresql") == 0.0
    # no idle sample: nothing taken off
    plain = RunFigures(100, 9.0, 0.0, 0.0, 0.0, 1.5, cpu_by_group=(("redis", 0.5),))
    assert plain.net_cpu_ms_per_report("redis") == plain.cpu_ms_per_report("redis")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_tiny_run_prints_every_pass_with_positive_figures() -> None:
    from tests.services import need_service

    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed for a Redis Cluster")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "bench" / "cluster_bench.py"),
         "--reports", "20", "--masters", "1", "--idle", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("pass "))
    rows = {}
    for line in lines[header + 1 : header + 1 + len(ROWS)]:
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = cells
    assert list(rows) == list(ROWS), output
    for label, cells in rows.items():
        # reports, reports/s, CPU ms/report, pipeline, redis, replicas, rabbitmq,
        # postgresql, 2 ratios
        assert len(cells) == 10, (label, cells)
        reports, rate, total, pipeline, *servers, cpu_ratio, rate_ratio = map(float, cells)
        rabbitmq = servers[2]
        assert reports == 20, (label, cells)
        assert min(rate, total, pipeline, rabbitmq, cpu_ratio, rate_ratio) > 0, (label, cells)
        # CPU times come in clock ticks (10 ms): a server may spend less than one on 20
        # reports; the parts still add up to the total
        assert min(servers) >= 0, (label, cells)
        assert total == pytest.approx(pipeline + sum(servers), abs=0.003)
    # the single Redis has no replica
    assert float(rows["single, quorum"][5]) == 0.0
    assert rows["single, quorum"][-2:] == ["1.00", "1.00"], output
    assert "load average" in done.stdout
