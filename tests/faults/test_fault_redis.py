"""Fault 4: Redis restarted mid-stream (no persistence: it comes back empty).

The throwaway Redis of the suite (``services.py``), never the developer's.

While Redis is away, workers and the dispatcher back off and retry (no report goes to
the DLQ because the store was unreachable); when it is back empty, the first process to
meet it (a worker, the dispatcher or the driver's intake) rebuilds the state (orders,
accounts, lifecycle index, exec_id ledgers) from the database once the db writer has
written every event published before, logged ``STATE:FALLBACK`` / ``STATE:REBUILT``; the
others wait for it (``STATE:REBUILT_BY_PEER``) before they go on (docs/state-rebuild.md).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import RunConfig
from tests.faults.services import FaultServers

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

DOWN_S = 4.0


async def test_redis_restarted_empty_mid_stream(
    make_run: MakeRun, fault_servers: FaultServers
) -> None:
    run = await make_run(RunConfig(orders=800, rate_per_s=40.0))
    await run.wait_events(900)
    run.mark_fault()
    await asyncio.to_thread(fault_servers.redis.restart_empty, DOWN_S)
    run.mark_cleared()
    verdict = await run.verify("Redis restarted empty mid-stream")
    # the first process to meet the empty store rebuilds it: a pipeline process, or the
    # driver's intake (docs/state-rebuild.md); the others wait for it
    rebuilt = run.lines_with("[STATE:REBUILT]", with_driver=True)
    assert rebuilt, "no process rebuilt the state from the database"
    assert run.lines_with("[STATE:FALLBACK]", with_driver=True)
    # nothing was dead-lettered because the store was unreachable
    assert not [r for r in verdict.dead_lettered if r in {"max_attempts"}], verdict.dead_lettered
    assert_clean(verdict, outage=True)
