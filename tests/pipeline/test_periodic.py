"""The dispatcher's timer loop: runs now and on every tick, survives server errors, stops."""

from __future__ import annotations

import asyncio

import pytest

from execflow.errors import BusError, ExecflowError
from execflow.pipeline.periodic import Periodic


async def test_runs_now_then_every_interval_and_stops() -> None:
    ticks: list[int] = []
    three = asyncio.Event()

    async def step() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 3:
            three.set()

    timer = Periodic("t", step, 0.001, on_error=lambda exc: None)
    timer.start()
    timer.start()  # a second start while running adds no second loop
    await asyncio.wait_for(three.wait(), 5)
    await timer.stop()
    stopped_at = len(ticks)
    await asyncio.sleep(0.02)
    assert ticks[:3] == [0, 1, 2]
    assert len(ticks) == stopped_at  # nothing runs after stop


async def test_server_errors_are_reported_and_the_loop_goes_on() -> None:
    seen: list[str] = []
    recovered = asyncio.Event()
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise BusError(f"broker away {calls}")

    def failed(exc: ExecflowError) -> None:
        seen.append(str(exc))

    timer = Periodic("t", step, 0.001, on_error=failed, on_success=recovered.set)
    timer.start()
    await asyncio.wait_for(recovered.wait(), 5)
    await timer.stop()
    assert seen == ["broker away 1", "broker away 2"]


async def test_a_bug_ends_the_task_instead_of_looping() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    timer = Periodic("t", step, 0.001, on_error=lambda exc: None)
    timer.start()
    task = timer._task
    assert task is not None
    with pytest.raises(ValueError, match="bug"):
        await asyncio.wait_for(task, 5)
    assert calls == 1
