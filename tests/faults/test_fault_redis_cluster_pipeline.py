"""Issue 17, point 4: a Redis Cluster master lost under load, pipeline level.

The distributed pipeline (``execflow run all`` and the driver, ten processes) keeps its
state on the throwaway 3-master, 3-replica Redis Cluster (``tests/clusters.py``,
``cluster-node-timeout`` 2000 ms; never the default-port servers); RabbitMQ and
PostgreSQL are the suite's throwaway ones. Mid-stream the master holding the run's
completeness marker (so every process that meets the outage also meets it in its state
check) is

* killed with ``kill -9``: its replica is promoted, and the killed node, restarted,
  rejoins as a replica of its successor;
* or paused (SIGSTOP) past ``cluster-node-timeout``: its replica is promoted while its
  sockets stay open and swallow what is sent to it; on SIGCONT it learns it was
  replaced and turns into a replica (what it had accepted meanwhile is dropped).

Meanwhile every state call on its slots is retried (``RedisClusterStateStore``), then
fails with ``StoreError`` and the runner retries the message. The verdict is the
suite's: nothing confirmed lost, nothing applied twice, the reconciliation clean, every
order final, the event rate back within the recovery limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from execflow.pipeline.completeness import STATE_MARKER
from tests.clusters import ClusterNodeProcess, RedisClusterServers
from tests.faults.conftest import assert_clean, run_on
from tests.faults.harness import PipelineRun, RunConfig, SplitEndpoints, Verdict
from tests.faults.services import FaultServers
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

NODE_TIMEOUT_S = 2.0
PAUSE_S = 4 * NODE_TIMEOUT_S  # well past the node timeout: the replica is promoted meanwhile


@pytest.fixture
async def cluster_state_run(
    tmp_path: Path, redis_cluster: RedisClusterServers, restore_services: FaultServers
) -> AsyncIterator[PipelineRun]:
    """A ``PipelineRun`` with its state on the cluster; stopped and cleaned up at the end."""
    await asyncio.to_thread(redis_cluster.restore)
    servers = restore_services
    endpoints = SplitEndpoints(servers.amqp_url, f"{redis_cluster.url}/", servers.rabbitmqctl)
    # The driver may take 180 s, not 30, to see every order final: on this shared box
    # the dispatcher falls behind 40 orders/s with or without a fault (a run without
    # one, load 17-28: 400+ reports queued, 228 s to place, 169 orders not final after
    # 30 s, none stuck: each final once the backlog was worked off). It returns as soon
    # as every order is final; the bound is only how long it waits.
    config = RunConfig(
        orders=700,
        rate_per_s=40.0,
        settle_timeout_s=deadline_s(180.0),
        settle_stall_s=deadline_s(180.0),
    )
    async with run_on(
        tmp_path,
        servers,
        endpoints,
        config,
        start_timeout_s=120.0,
        before_cleanup=lambda: asyncio.to_thread(redis_cluster.restore),
    ) as run:
        yield run


def marker_master(cluster: RedisClusterServers, run: PipelineRun) -> ClusterNodeProcess:
    """The master holding the run's completeness marker (``EXISTS`` answers 1 there only:
    the other masters answer ``MOVED``)."""
    key = f"{run.key_prefix}:lc:{{{STATE_MARKER}}}"
    for node in cluster.masters():
        if cluster.redis_cli(node, "EXISTS", key).strip() == "1":
            return node
    raise AssertionError(f"no master holds {key}: the run did not mark its state complete")


async def victim_under_load(
    cluster: RedisClusterServers, run: PipelineRun
) -> tuple[ClusterNodeProcess, ClusterNodeProcess]:
    """Once the run is under way: the master holding its marker, and that master's replica."""
    await run.wait_events(400)
    victim = await asyncio.to_thread(marker_master, cluster, run)
    return victim, await asyncio.to_thread(cluster.replica_of, victim)


def failover_notes(run: PipelineRun, verdict: Verdict) -> None:
    """How often the processes met the failover, from their logs (redis-py's own quick
    retries, which follow a timeout or a refused connection with a new slot map, leave
    no line)."""
    verdict.notes.update(
        store_retries=len(run.lines_with("redis cluster call failed; retrying")),
        outage_retries=len(run.lines_with("outage=true")),
        replica_changes=len(run.lines_with("replicas of a master changed")),
        lagging=len(run.lines_with("write not on a lagging replica")),
        replaced_master=len(run.lines_with("no longer the master of its slot")),
        rebuilds=len(run.lines_with("STATE:FALLBACK")),
    )


async def met_the_failover(
    cluster: RedisClusterServers,
    run: PipelineRun,
    verdict: Verdict,
    victim: ClusterNodeProcess,
    successor: ClusterNodeProcess,
) -> None:
    """Print the verdict; fail unless the pipeline committed on the promoted replica (a
    replica runs no client's script: every ``EVAL`` it counts came after its promotion)."""
    failover_notes(run, verdict)
    commits = await asyncio.to_thread(cluster.calls, successor, "eval")
    verdict.notes.update(
        victim=victim.address, successor=successor.address, successor_commits=commits
    )
    print(verdict.notes, verdict.row())
    assert commits > 0, "no commit on the promoted replica: the pipeline never met the failover"


@pytest.mark.timeout(900)
async def test_kill_9_a_redis_master_under_load(
    cluster_state_run: PipelineRun, redis_cluster: RedisClusterServers
) -> None:
    run = cluster_state_run
    victim, successor = await victim_under_load(redis_cluster, run)
    run.mark_fault()
    started = time.monotonic()
    await asyncio.to_thread(redis_cluster.kill, victim)
    await asyncio.to_thread(redis_cluster.wait_replaced, victim, deadline_s(60))
    promoted_s = time.monotonic() - started
    run.mark_cleared()
    # the killed node comes back empty and rejoins as a replica of its successor
    await asyncio.to_thread(redis_cluster.start_node, victim)
    await asyncio.to_thread(redis_cluster.wait_healthy, deadline_s(60))
    rejoined_as = await asyncio.to_thread(redis_cluster.role, victim)
    verdict = await run.verify("Redis Cluster: kill -9 of a master under load")
    verdict.notes.update(promoted_s=round(promoted_s, 1), rejoined_as=rejoined_as)
    await met_the_failover(redis_cluster, run, verdict, victim, successor)
    assert rejoined_as == "slave"
    assert_clean(verdict)


@pytest.mark.timeout(900)
async def test_pause_a_redis_master_past_its_node_timeout(
    cluster_state_run: PipelineRun, redis_cluster: RedisClusterServers
) -> None:
    run = cluster_state_run
    victim, successor = await victim_under_load(redis_cluster, run)
    run.mark_fault()
    started = time.monotonic()
    redis_cluster.pause(victim)
    try:
        await asyncio.to_thread(redis_cluster.wait_replaced, victim, deadline_s(60))
        promoted_s = time.monotonic() - started
        await asyncio.sleep(max(0.0, PAUSE_S - promoted_s))
    finally:
        redis_cluster.resume(victim)
    paused_s = time.monotonic() - started
    run.mark_cleared()
    # back, it learns from the others that it was replaced and follows its successor
    await asyncio.to_thread(redis_cluster.wait_healthy, deadline_s(60))
    rejoined_as = await asyncio.to_thread(redis_cluster.role, victim)
    verdict = await run.verify("Redis Cluster: a master paused (SIGSTOP) past its node timeout")
    verdict.notes.update(
        promoted_s=round(promoted_s, 1), paused_s=round(paused_s, 1), rejoined_as=rejoined_as
    )
    await met_the_failover(redis_cluster, run, verdict, victim, successor)
    assert rejoined_as == "slave"
    assert_clean(verdict)
