"""Closing out waits on progress, within an overall limit, and says what did not end."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from execflow.apps.scenario import ScenarioConfig, ScenarioDriver, ScenarioResult
from execflow.apps.settle import SettleStop, SettleWatch
from execflow.cli.demo import unsettled_note
from execflow.clock import FakeClock
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import open_services
from execflow.settings import Settings
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed


def test_progress_keeps_the_wait_going_past_the_stall_window() -> None:
    clock = FakeClock()
    watch = SettleWatch(clock, stall_s=60, limit_s=600)
    for final in range(1, 9):  # one more order ends every 50 s: 400 s in all
        clock.advance(50)
        watch.seen(final)
        assert watch.stop() is None
    assert watch.elapsed_s() == 400


def test_no_progress_for_the_stall_window_stops_as_stalled() -> None:
    clock = FakeClock()
    watch = SettleWatch(clock, stall_s=60, limit_s=600)
    watch.seen(3)
    clock.advance(59)
    watch.seen(3)  # the same count: no progress
    assert watch.stop() is None
    assert watch.left_s() == 1
    clock.advance(2)
    assert watch.stop() is SettleStop.STALLED


def test_the_overall_limit_stops_even_while_orders_still_end() -> None:
    clock = FakeClock()
    watch = SettleWatch(clock, stall_s=60, limit_s=300)
    final = 0
    while watch.stop() is None:
        clock.advance(30)
        final += 1
        watch.seen(final)
    assert watch.stop() is SettleStop.LIMIT
    assert 300 < watch.elapsed_s() <= 330
    assert watch.left_s() == 0


async def test_a_silent_lp_stalls_closing_out_long_before_the_limit(tmp_path: Path) -> None:
    """Nobody answers: the orders stay in flight, the driver gives up after the stall
    window (not the overall limit) and names the orders and the status they are in."""
    settings = Settings(
        log_dir=tmp_path / "logs", database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    )
    logs = setup_logging(settings, "simulator", bridge=False)
    clock = FakeClock()
    try:
        async with open_services(settings, logs) as services:
            feed = PriceFeed(DEFAULT_SYMBOLS, services.state.put_price, random.Random(1), clock)
            await feed.publish()
            rng = random.Random(3)
            seed = demo_seed(3, rng, feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, rebuild=False)  # no LP: nothing answers
            await pipeline.start()
            rounds = 0

            async def drain() -> None:
                nonlocal rounds
                rounds += 1
                await pipeline.drain(timeout_s=10)
                clock.advance(20)  # each round takes 20 s of the driver's time

            intake = OrderIntake(services)
            config = ScenarioConfig(
                orders=6, follow_up_share=0, settle_stall_s=60, settle_timeout_s=3600
            )
            driver = ScenarioDriver(
                intake, services.state, feed, seed, config, rng, drain, clock=clock
            )
            try:
                result = await driver.run()
            finally:
                await intake.shutdown()
                await pipeline.stop()
    finally:
        logs.close()
    assert result.orders_placed == 6
    assert not result.settled
    assert result.settle_stop == "stalled"
    assert sorted(result.unsettled) == sorted(driver._owner)
    assert sum(result.unsettled_statuses.values()) == 6
    assert set(result.unsettled_statuses) <= {"QUEUED", "PENDING_QUEUED"}
    # given up after the 60 s stall window (4 rounds of 20 s), far from the 3600 s limit
    assert rounds == 4
    assert result.settle_s == 80


def test_the_summary_names_what_did_not_end_and_why() -> None:
    result = ScenarioResult(
        unsettled=[f"o{i}" for i in range(12)],
        unsettled_statuses=Counter({"CLOSING": 9, "QUEUED": 3}),
        settle_stop="stalled",
        settle_s=75.0,
    )
    note = unsettled_note(result)
    assert note.startswith("[bold red]12 orders not final[/] after 75.0 s of closing out")
    assert "no order had ended for the stall window (--settle-stall)" in note
    assert "CLOSING 9, QUEUED 3" in note
    assert "o9" in note and "o10" not in note and note.endswith(" ...")
    limit = unsettled_note(ScenarioResult(unsettled=["a"], settle_stop="limit"))
    assert "the overall limit (--settle-timeout) was reached" in limit
