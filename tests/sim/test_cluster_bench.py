"""``bench/cluster_bench.py`` at tiny counts with a 1-master cluster: every row, figures >= 0.

It runs on the default RabbitMQ, Redis and PostgreSQL (unique prefixes, a throwaway
database, all removed) and starts its own Redis and Redis Cluster on free ports. No
timing is asserted: every row is there, the rate, the total CPU and the pipeline's and
RabbitMQ's are positive, a server's may round to 0 at 20 reports (CPU time comes in
10 ms ticks), and the parts add up to the total.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from execflow.apps.bench import RunFigures

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("single, quorum", "single, classic", "own single, quorum", "cluster 1, quorum")


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
