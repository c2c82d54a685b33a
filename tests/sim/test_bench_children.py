"""A distributed bench pass ends as soon as one of its processes exits, not at its timeout."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from execflow.apps.bench import ChildExited, children_alive, wait_for


async def _child(code: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", code)


async def test_a_child_that_exited_is_named_with_its_exit_code() -> None:
    running = await _child("import time; time.sleep(30)")
    exited = await _child("raise SystemExit(3)")
    try:
        await exited.wait()
        children_alive({"dispatcher": [running]})  # still running: nothing raised
        with pytest.raises(ChildExited, match=r"worker_open \(instance 2\) exited with code 3"):
            children_alive({"dispatcher": [running], "worker_open": [running, exited]})
    finally:
        running.kill()
        await running.wait()


async def test_a_wait_ends_when_its_check_raises_not_at_its_timeout() -> None:
    exited = await _child("raise SystemExit(1)")
    await exited.wait()

    async def never() -> bool:
        return False

    started = time.monotonic()
    with pytest.raises(ChildExited, match="exited with code 1"):
        await wait_for(never, 60.0, poll_s=0.01, check=lambda: children_alive({"x": [exited]}))
    assert time.monotonic() - started < 30


async def test_a_wait_without_a_check_still_times_out() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(TimeoutError, match=r"not done after 0\.05 s"):
        await wait_for(never, 0.05, poll_s=0.01)
