"""Issue 17, point 4: kill -9 the RabbitMQ node holding the queues' leaders, under load.

The distributed pipeline runs on a 3-node RabbitMQ cluster of its own
(``ThrowawayRabbitCluster``: node names, AMQP and distribution ports, data directories
of its own; Redis and PostgreSQL are the suite's throwaway ones). Every process gets the
three nodes in one URL; the queues are quorum queues (the default). Each process
connects to the first node that answers, and a quorum queue's leader is placed on the
node of the client that declared it, so node 1 holds every connection and every
leader: killing it is the worst loss of one node. With two of three nodes left:

* every queue of the run gets a new leader on a survivor (a majority remains);
* every process reconnects to the next node, its consumers re-subscribe (each consumed
  queue has a consumer again) and its publishes resume (the event rate recovers);
* the verdict is the suite's: nothing confirmed lost, nothing applied twice, the
  reconciliation clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import assert_clean, run_on, started_rabbit_cluster
from tests.faults.harness import PipelineRun, RunConfig, SplitEndpoints
from tests.faults.services import (
    FaultServers,
    ServerUnavailable,
    ThrowawayRabbit,
    ThrowawayRabbitCluster,
)
from tests.faults.stress import deadline_s
from tests.faults.test_fault_zbroker import wait_consumers

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
async def cluster_run(
    tmp_path: Path,
    rabbit_cluster: ThrowawayRabbitCluster,
    restore_services: FaultServers,
) -> AsyncIterator[PipelineRun]:
    """A ``PipelineRun`` on the cluster; stopped and cleaned up at the end."""
    async with on_the_cluster(tmp_path, rabbit_cluster, restore_services) as run:
        yield run


@pytest.fixture
def partition_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ThrowawayRabbitCluster]:
    """The cluster healing partitions by itself (``autoheal``: ``pause_minority`` never
    heals a node that was frozen, it never saw itself in a minority), with a short
    ``net_ticktime`` (10 s, not 60) so that a paused node is counted down in a test's time."""
    with started_rabbit_cluster(
        request, tmp_path, partition_handling="autoheal", net_ticktime_s=10
    ) as cluster:
        yield cluster


@pytest.fixture
async def partition_run(
    tmp_path: Path,
    partition_cluster: ThrowawayRabbitCluster,
    restore_services: FaultServers,
) -> AsyncIterator[PipelineRun]:
    """A ``PipelineRun`` on the partition cluster, placing for long enough to outlast the
    pause (``PAUSED_RUN``)."""
    async with on_the_cluster(tmp_path, partition_cluster, restore_services, PAUSED_RUN) as run:
        yield run


# 700 orders: ~2,300 confirmed reports (the verdict wants 2,000), in less time. The
# driver waits 90 s, not 30, for every order to be final before it reconciles: with
# three more Erlang VMs on a busy 2-core box the db writer lags (a run at load 25
# had 170 orders not final after 30 s, the books clean once it caught up)
KILLED_RUN = RunConfig(
    orders=700, rate_per_s=40.0, settle_timeout_s=deadline_s(90.0), settle_stall_s=deadline_s(90.0)
)

# The paused-node test measures its recovery from the node's resume, some 30-45 s after
# the fault, and must still have a paced stream to measure for the whole recovery limit
# after that (30 s under stress-ng). The driver's schedule catches up after a stall: at
# 40 orders/s its 700 orders were all placed 44 s in, right after the failover, and a
# CI run found nothing left to recover (recovery None). 900 orders at 10/s place for
# 90 s: the fault comes some 15-25 s in, the resume 30-45 s later, and 20-45 s of the
# schedule are still ahead.
PAUSED_RUN = RunConfig(
    orders=900, rate_per_s=10.0, settle_timeout_s=deadline_s(90.0), settle_stall_s=deadline_s(90.0)
)


def on_the_cluster(
    tmp_path: Path,
    cluster: ThrowawayRabbitCluster,
    services: FaultServers,
    config: RunConfig = KILLED_RUN,
) -> contextlib.AbstractAsyncContextManager[PipelineRun]:
    """A started ``PipelineRun`` with ``cluster`` as its broker; stopped and cleaned up at
    the end."""
    endpoints = SplitEndpoints(cluster.amqp_url, services.redis_url, cluster.rabbitmqctl)
    # three more Erlang VMs on the box: the ten children take longer to come up; the
    # cluster is killed and removed after the test, its queues with it
    return run_on(
        tmp_path,
        services,
        endpoints,
        config,
        start_timeout_s=180.0,
        queues_die_with_the_broker=True,
    )


async def wait_new_leaders(
    cluster: ThrowawayRabbitCluster, prefix: str, queues: Iterable[str], timeout_s: float = 60.0
) -> dict[str, str]:
    """Wait until each of ``queues`` is listed with a leader on a living node; the leaders.

    ``list_queues`` leaves out a queue whose leader it cannot reach, so "every listed queue
    has a living leader" can hold while a queue led by the lost node has no new leader yet:
    the wait is for the queues named, not for whatever the listing happens to show.
    """
    wanted = set(queues)
    async with asyncio.timeout(deadline_s(timeout_s)):
        while True:
            leaders = await asyncio.to_thread(cluster.leaders, prefix)
            living = {node.node for node in cluster.living()}
            if all(leaders.get(queue) in living for queue in wanted):
                return leaders
            await asyncio.sleep(0.5)


# the cluster's boot (25-50 s, more on a loaded box) counts too; a run at load 20-25 took 427 s
@pytest.mark.timeout(600)
async def test_the_node_holding_the_leaders_killed_under_load(
    cluster_run: PipelineRun, rabbit_cluster: ThrowawayRabbitCluster
) -> None:
    run = cluster_run
    await run.wait_events(400)
    before = await asyncio.to_thread(rabbit_cluster.leaders, run.prefix)
    work_queue = f"{run.prefix}.worker.open"
    victim: ThrowawayRabbit = rabbit_cluster.node_named(before[work_queue])
    led = sorted(q for q, leader in before.items() if leader == victim.node)
    run.mark_fault()
    started = time.monotonic()
    await asyncio.to_thread(victim.hard_kill)
    after = await wait_new_leaders(rabbit_cluster, run.prefix, before)
    elected_s = time.monotonic() - started
    await wait_consumers(run)
    resumed_s = time.monotonic() - started
    run.mark_cleared()
    verdict = await run.verify("RabbitMQ cluster: kill -9 of the node holding the leaders")
    verdict.notes.update(
        queues_led_by_the_victim=len(led),
        new_leaders_s=round(elected_s, 1),
        consumers_back_s=round(resumed_s, 1),
    )
    assert work_queue in led
    assert all(after[q] != victim.node for q in led)
    print(verdict.notes, verdict.row())
    assert_clean(verdict, outage=True)


def log_tail(node: ThrowawayRabbit, chars: int = 4000) -> str:
    """The end of each of ``node``'s log files."""
    logs = sorted(Path(node.env["RABBITMQ_LOG_BASE"]).glob("*.log"))
    return "".join(path.read_text(errors="replace")[-chars:] for path in logs)


def autoheal_lines(cluster: ThrowawayRabbitCluster, limit: int = 6) -> dict[str, list[str]]:
    """Each node's log lines about autoheal (who won, who was restarted), its last few.

    Autoheal picks the partition with the most client connections as the winner: which
    side restarted is what a slow recovery after the resume is read against.
    """
    found: dict[str, list[str]] = {}
    for node in cluster.nodes:
        lines = [
            line.strip()[-200:]
            for path in sorted(Path(node.env["RABBITMQ_LOG_BASE"]).glob("*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if "autoheal" in line.lower()
        ]
        found[node.node] = lines[-limit:]
    return found


PAUSE_S = 30.0  # past 2 AMQP heartbeats (5 s), the net tick time (10 s) and a leader election


@pytest.mark.timeout(900)
async def test_the_node_holding_the_leaders_paused_under_load(
    partition_run: PipelineRun, partition_cluster: ThrowawayRabbitCluster
) -> None:
    """SIGSTOP of the node every process is connected to and every leader is on, 30 s.

    Its clients miss its heartbeats and reconnect to the next node; the other two elect
    new leaders; on SIGCONT the node finds itself cut off from the majority and (``autoheal``)
    is restarted by the winning side and rejoins, then catches up. Same verdict.
    """
    run, cluster = partition_run, partition_cluster
    await run.wait_events(400)
    before = await asyncio.to_thread(cluster.leaders, run.prefix)
    work_queue = f"{run.prefix}.worker.open"
    victim = cluster.node_named(before[work_queue])
    led = sorted(q for q, leader in before.items() if leader == victim.node)
    run.mark_fault()
    started = time.monotonic()
    cluster.pause(victim)
    try:
        after = await wait_new_leaders(cluster, run.prefix, before)
        elected_s = time.monotonic() - started
        await wait_consumers(run)
        resumed_s = time.monotonic() - started
        await asyncio.sleep(max(0.0, PAUSE_S - resumed_s))
    finally:
        cluster.resume(victim)
    run.mark_cleared()
    paused_s = time.monotonic() - started
    try:
        # autoheal restarts the losing side's broker once it sees the others again: then
        # a boot on a loaded box (25-50 s and more), its quorum queue members caught up
        await asyncio.to_thread(cluster.wait_running, len(cluster.nodes), deadline_s(300))
    except ServerUnavailable:
        tail = await asyncio.to_thread(log_tail, victim)
        status = await asyncio.to_thread(cluster.rabbitmqctl, "cluster_status")
        raise AssertionError(f"{victim.node} did not rejoin:\n{status.stdout}\n{tail}") from None
    rejoined_s = time.monotonic() - started
    verdict = await run.verify("RabbitMQ cluster: the node holding the leaders paused 30 s")
    verdict.notes.update(
        queues_led_by_the_victim=len(led),
        new_leaders_s=round(elected_s, 1),
        consumers_back_s=round(resumed_s, 1),
        paused_s=round(paused_s, 1),
        rejoined_s=round(rejoined_s, 1),
        victim=victim.node,
        autoheal=await asyncio.to_thread(autoheal_lines, cluster),
    )
    print(verdict.notes, verdict.row())
    assert work_queue in led
    assert all(after[q] != victim.node for q in led)
    assert_clean(verdict, outage=True)
