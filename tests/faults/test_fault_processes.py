"""Faults 1 and 2: kill -9 a worker mid-batch, kill -9 the dispatcher mid-stream.

The supervisor (``execflow run all``) restarts the killed process by itself; messages
the dead process had taken but not acknowledged go back to their queue and are handled
again, and the exec_id ledger turns the second application into ``SKIP:DUPLICATE``.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import PipelineRun, RunConfig
from tests.faults.stress import deadline_s

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

CONFIG = RunConfig(orders=650, rate_per_s=40.0)


async def kill_and_wait_restart(run: PipelineRun, child: str) -> tuple[int, int]:
    """SIGKILL ``child``; wait until the supervisor's new incarnation consumes again."""
    old = await asyncio.to_thread(run.child_pid, child)
    run.mark_fault()
    os.kill(old, signal.SIGKILL)
    new = await run.wait_child_restarted(child, old)
    async with asyncio.timeout(deadline_s(60)):
        while not await asyncio.to_thread(run.consuming_since_restart, child):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    run.mark_cleared()
    return old, new


async def test_kill_9_a_worker_mid_batch(make_run: MakeRun) -> None:
    child = "worker_open"
    run = await make_run(CONFIG)
    await run.wait_events(900)
    old, new = await kill_and_wait_restart(run, child)
    verdict = await run.verify(f"kill -9 {child} mid-batch")
    assert old != new
    exits = run.supervisor_lines("SUPERVISOR:CHILD_EXITED")
    assert any(f"child={child}" in line and "exit_code=-9" in line for line in exits), exits
    assert verdict.restarts == 1
    assert_clean(verdict)


async def test_kill_9_the_dispatcher_mid_stream(make_run: MakeRun) -> None:
    run = await make_run(CONFIG)
    await run.wait_events(900)
    await kill_and_wait_restart(run, "dispatcher")
    verdict = await run.verify("kill -9 dispatcher mid-stream")
    assert verdict.restarts == 1
    assert_clean(verdict)
