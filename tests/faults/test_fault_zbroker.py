"""Faults 3 and 8: RabbitMQ restarted, and the broker or Redis frozen past the heartbeat.

These stop or freeze the suite's throwaway servers (``services.py``); every test restores
them in ``finally`` (and ``make_run`` checks again at teardown).

3. ``rabbitmqctl stop_app`` / ``start_app``, then a hard kill of the broker's VM and a
   ``rabbitmq-server -detached``: every consumer comes back (consumer count >= 1 per
   queue), unconfirmed publishes are re-sent, nothing hangs; durable queues keep what
   was confirmed.
8. SIGSTOP of the broker for more than twice the heartbeat (5 s here), SIGCONT; then of
   Redis for longer than its timeout (2 s here): the connections are found dead, the
   pipeline reconnects and retries, as in 3 and 4 (Redis keeps its data, no rebuild).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import PipelineRun, RunConfig
from tests.faults.services import FaultServers
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

HEARTBEAT_S = 5.0
CONSUMED = ("reports", "db_updates", *(f"worker.{k}" for k in ("open", "close", "reject")))


def consumers(run: PipelineRun) -> dict[str, int]:
    """Consumers per queue of this run, as the broker counts them."""
    listed = run.servers.rabbitmqctl("-q", "list_queues", "name", "consumers")
    out = {}
    for line in listed.stdout.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name.startswith(run.prefix + ".") and count.isdigit():
            out[name.removeprefix(run.prefix + ".")] = int(count)
    return out


async def wait_consumers(run: PipelineRun, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(deadline_s(timeout_s)):
        while True:
            counts = await asyncio.to_thread(consumers, run)
            if all(counts.get(q, 0) >= 1 for q in CONSUMED):
                return
            await asyncio.sleep(0.5)


async def test_rabbitmq_restarted_mid_stream_app_then_hard_kill(
    make_run: MakeRun, fault_servers: FaultServers
) -> None:
    rabbit = fault_servers.rabbit
    run = await make_run(RunConfig(orders=1100, rate_per_s=40.0))
    await run.wait_events(700)
    run.mark_fault()
    try:
        await asyncio.to_thread(rabbit.stop_app)
        await asyncio.sleep(3.0)
    finally:
        await asyncio.to_thread(rabbit.start_app)
    await wait_consumers(run)
    await asyncio.sleep(2.0)
    try:
        await asyncio.to_thread(rabbit.hard_kill)
        await asyncio.sleep(1.0)
    finally:
        await asyncio.to_thread(rabbit.start)
    await wait_consumers(run)
    run.mark_cleared()
    verdict = await run.verify("RabbitMQ stop_app/start_app + kill -9 and start")
    assert_clean(verdict, outage=True)


async def test_broker_then_redis_frozen_past_the_heartbeat(
    make_run: MakeRun, fault_servers: FaultServers
) -> None:
    run = await make_run(RunConfig(orders=1100, rate_per_s=40.0))
    await run.wait_events(700)
    run.mark_fault()
    try:
        fault_servers.rabbit.freeze()
        await asyncio.sleep(HEARTBEAT_S * 2.5)
    finally:
        fault_servers.rabbit.resume()
    await wait_consumers(run)
    started = time.monotonic()
    try:
        fault_servers.redis.freeze()
        await asyncio.sleep(8.0)
    finally:
        fault_servers.redis.resume()
        fault_servers.ensure()
    run.mark_cleared()
    verdict = await run.verify("RabbitMQ frozen 12.5 s, then Redis frozen 8 s (SIGSTOP/SIGCONT)")
    verdict.notes["redis_frozen_s"] = round(time.monotonic() - started, 1)
    retries = run.lines_with("outage=true")
    assert retries, "nobody noticed Redis was frozen"
    assert not run.lines_with("[STATE:REBUILT]")  # Redis kept its data: no rebuild
    assert_clean(verdict, outage=True)
