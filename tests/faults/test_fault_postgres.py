"""Fault 7: PostgreSQL stopped for 30 s mid-stream (the suite's throwaway server).

The workers go on (they do not need the database); the db writer cannot commit, so it
acknowledges nothing and retries (never the DLQ: ``retry_forever``), and its queue grows
while the database is away. Afterwards every event is in the database exactly once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import RunConfig
from tests.faults.services import FaultServers
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

DOWN_S = 30.0


async def test_postgresql_stopped_30_s(make_run: MakeRun, fault_servers: FaultServers) -> None:
    postgres = fault_servers.postgres
    run = await make_run(RunConfig(orders=1400, rate_per_s=40.0))
    await run.wait_events(700)
    depths: list[int] = []
    async with run.backends() as (bus, _state):
        queue = bus.queues.db_updates
        run.mark_fault()
        try:
            await asyncio.to_thread(postgres.fault_stop)
            until = time.monotonic() + DOWN_S
            while time.monotonic() < until:
                depths.append(await bus.queue_depth(queue))
                await asyncio.sleep(1.0)
        finally:
            await asyncio.to_thread(postgres.start)
        run.mark_cleared()
        async with asyncio.timeout(deadline_s(60)):
            while await bus.queue_depth(queue) > 0:  # noqa: ASYNC110 - the db writer drains it
                await asyncio.sleep(0.2)
    verdict = await run.verify(f"PostgreSQL stopped {DOWN_S:.0f} s")
    verdict.notes["db_updates_max_depth"] = max(depths)
    assert max(depths) > depths[0], depths  # the backlog waited in the queue, unacknowledged
    assert not verdict.dead_lettered, verdict.dead_lettered
    assert run.lines_with("[DBWRITER:RETRY]")
    assert_clean(verdict)
