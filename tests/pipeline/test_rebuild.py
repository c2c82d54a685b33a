"""Rebuild of the state store from the database after the store lost everything."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from execflow.clock import FakeClock
from execflow.domain.enums import LegKind, OrderStatus, RequestKind
from execflow.pipeline.completeness import REBUILD_CLAIM
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.rebuild import needs_rebuild, rebuild_after_outage
from execflow.pipeline.services import Services
from tests.pipeline.conftest import LogReader
from tests.pipeline.flow import ASK, BID, QTY, SEED_FILE, USER, Flow


def _without_outbox(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "outbox"}


async def test_flush_then_rebuild_restores_everything_and_the_pipeline_goes_on(
    services: Services, read_logs: LogReader
) -> None:
    state = services.state
    async with Flow.running(services) as flow:
        with_leg = await flow.leg_active(LegKind.SL)
        resting = await flow.resting()
        opened = [e for e in await flow.events(with_leg.order_id) if e.kind == "ORDER_OPENED"]
        fill_exec_id = opened[0].exec_id
        before_orders = await state.list_orders(USER)
        before_account = await state.get_account(USER)
        prices_before = await state.get_prices()
    await state.flush_all()
    assert await needs_rebuild(state, services.database)

    settings = services.settings.model_copy(update={"seed_file": SEED_FILE})
    services = replace(services, settings=settings)  # instruments come back from the seed
    pipeline = EmbeddedPipeline(services)
    await pipeline.start()
    try:
        assert pipeline.rebuilt is not None and pipeline.rebuilt.orders == 2
        after_orders = await state.list_orders(USER)
        assert {k: _without_outbox(v.data) for k, v in after_orders.items()} == {
            k: _without_outbox(v.data) for k, v in before_orders.items()
        }
        account = await state.get_account(USER)
        assert account is not None and before_account is not None
        assert account.data == before_account.data
        assert await state.get_instrument("standard", "EURUSD") is not None
        assert set(await state.get_prices()) == set(prices_before)
        # the lifecycle index came back: every request of both orders routes again
        for lid, kind in (
            (with_leg.order_id, RequestKind.OPEN),
            (with_leg.lifecycle_id, RequestKind.PLACE_SL),
            (resting.order_id, RequestKind.PLACE_PENDING),
        ):
            record = await state.get_lifecycle(lid)
            assert record is not None and record["kind"] == kind.value

        flow = Flow(services, pipeline, first_exec_id=1000)
        # an old fill redelivered after the rebuild is recognised (ledger rebuilt)
        await flow.report(with_leg.order_id, "EXECUTED", qty=QTY, px=ASK, exec_id=fill_exec_id)
        # and new work proceeds: the SL triggers, the pending order fills
        await flow.report(with_leg.lifecycle_id, "EXECUTED", qty=QTY, px=BID)
        await flow.report(resting.lifecycle_id, "EXECUTED", qty=QTY, px="1.07994")
        assert (await flow.order(with_leg.order_id)).status is OrderStatus.CLOSED
        assert (await flow.order(resting.order_id)).status is OrderStatus.OPEN
    finally:
        await pipeline.stop()
    rebuilt = read_logs.one("supervisor", "STATE:REBUILT")
    assert rebuilt.get("orders") == "2" and rebuilt.get("lifecycles") is not None
    assert read_logs.one("supervisor", "STATE:FALLBACK").get("reason") == "state_store_empty"
    assert read_logs.find("worker_open", "OPEN:SKIP:DUPLICATE")


async def test_a_peers_rebuild_is_waited_for_on_the_injected_clock(
    services: Services, clock: FakeClock, read_logs: LogReader
) -> None:
    """A claim whose owner died: the others rebuild after ``peer_wait_s`` of *their* clock."""
    async with Flow.running(services) as flow:
        await flow.opened()
    state = services.state
    await state.flush_all()
    assert await state.put_lifecycle(REBUILD_CLAIM, {"marker": REBUILD_CLAIM})  # and it died
    log = services.logger("worker_open")
    waiting = asyncio.create_task(
        rebuild_after_outage(
            state, services.database, SEED_FILE, log, peer_wait_s=60.0, clock=clock
        )
    )
    await asyncio.sleep(0.3)  # several polls: the fake clock has not moved, so it waits on
    assert not waiting.done()
    clock.advance(61.0)
    report = await asyncio.wait_for(waiting, 5.0)
    assert report is not None and report.orders == 1
    services.logs.flush()
    lines = read_logs.path("worker_open").read_text()
    assert "[STATE:FALLBACK]" in lines and "reason=peer_rebuild_timeout" in lines
