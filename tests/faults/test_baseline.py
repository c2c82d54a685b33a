"""The harness itself, with no fault: the run is clean and the checks see every report."""

from __future__ import annotations

import pytest

from tests.faults.conftest import MakeRun, assert_clean
from tests.faults.harness import RunConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_run_without_fault_applies_every_confirmed_report_once(make_run: MakeRun) -> None:
    run = await make_run(RunConfig(orders=900, rate_per_s=45.0))
    await run.wait_events(600)
    run.mark_fault()
    run.mark_cleared()
    verdict = await run.verify("none (baseline)")
    assert_clean(verdict)
    assert verdict.applied > 0 and verdict.confirmed >= verdict.applied
