"""End to end, embedded: duplicates, reordering, both legs filled, bad reports, two
instances of one worker, shutdown with messages in flight."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
import pytest

from execflow.backends.memory_bus import InMemoryBus
from execflow.domain.enums import CloseReason, LegKind, LegState, OrderStatus, RequestKind
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services
from execflow.pipeline.workers import worker_consumer
from execflow.settings import Settings
from tests.pipeline.conftest import LogReader, drain
from tests.pipeline.flow import ASK, BID, QTY, SL, TP, USER, Flow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Parks that wait long enough for the report they wait for: 8 tries from 20 ms,
    doubling up to 0.5 s, about 2 s in all (the suite's 4 ms cap made them 32 ms in all,
    which a loaded machine outran once)."""
    return settings.model_copy(
        update={"park_max_attempts": 8, "retry_base_delay_s": 0.02, "retry_max_delay_s": 0.5}
    )


async def test_duplicate_fill_is_applied_once(services: Services, read_logs: LogReader) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request()
        exec_id = await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK)
        balance = (await flow.account()).used_margin_executed
        await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, exec_id=exec_id)
        assert (await flow.account()).used_margin_executed == balance
        assert (await flow.event_kinds(setup.order_id)).count("ORDER_OPENED") == 1
    assert len(read_logs.find("worker_open", "OPEN:SUCCESS")) == 1
    skipped = read_logs.one("worker_open", "OPEN:SKIP:DUPLICATE")
    assert skipped.get("order_id") == setup.order_id
    # the duplicate re-published its recorded DB event; the db writer skipped it
    assert [
        r
        for r in read_logs.find("db_writer", "DBWRITER:SKIP:DUPLICATE")
        if r.get("event_id") == f"{setup.order_id}:{exec_id}:ORDER_OPENED"
    ]


async def test_sl_fill_before_sl_ack(services: Services, read_logs: LogReader) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.leg_request(LegKind.SL)
        await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=BID)
        await flow.report(setup.lifecycle_id, "PENDING", level=setup.request["stop_px"])
        order = await flow.order(setup.order_id)
        assert order.status is OrderStatus.CLOSED and order.close_reason is CloseReason.STOPLOSS
        assert order.sl.state is LegState.TRIGGERED
    stale = read_logs.one("worker_stoploss", "STOPLOSS:SKIP:STALE")
    assert stale.get("order_id") == setup.order_id


async def test_close_fill_before_open_fill_is_parked_then_applied(
    services: Services, read_logs: LogReader
) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.open_request(sl=SL)
        opener = next(r for r in flow.pipeline.workers if r.spec.component == "worker_open")
        await opener.stop()
        # The open fill waits in worker.open; the SL fill (its lifecycle registered, as
        # the open worker will do) overtakes it to the close worker and is parked.
        sl_id = f"{setup.order_id}-sl-1"
        await services.state.put_lifecycle(
            sl_id,
            {"lifecycle_id": sl_id, "account_id": USER, "order_id": setup.order_id,
             "kind": RequestKind.PLACE_SL.value},
        )  # fmt: skip
        await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, settle=False)
        await flow.report(sl_id, "EXECUTED", qty=QTY, px=BID, settle=False)
        closer = services.logger("worker_close").stats
        while closer.count("parked") == 0:  # noqa: ASYNC110 - a counter, no event to wait on
            await asyncio.sleep(0.005)
        await opener.start()
        await flow.settle()
        order = await flow.order(setup.order_id)
        assert order.status is OrderStatus.CLOSED and order.close_reason is CloseReason.STOPLOSS
        assert await flow.event_kinds(setup.order_id) == [
            "ORDER_SUBMITTED",
            "ORDER_OPENED",
            "ORDER_CLOSED",
        ]
    parked = read_logs.find("worker_close", "CLOSE:PARKED")
    assert parked and parked[0].get("reason") == "position_not_open"
    assert read_logs.one("worker_close", "CLOSE:SUCCESS").get("order_id") == setup.order_id


async def test_both_legs_filled_goes_to_review(services: Services, read_logs: LogReader) -> None:
    async with Flow.running(services) as flow:
        setup = await flow.opened(sl=SL, tp=TP)
        sl = flow.request(RequestKind.PLACE_SL, setup.order_id)
        tp = flow.request(RequestKind.PLACE_TP, setup.order_id)
        await flow.report(sl["lifecycle_id"], "PENDING", level=sl["stop_px"])
        await flow.report(tp["lifecycle_id"], "PENDING", level=tp["price"])
        await flow.report(sl["lifecycle_id"], "EXECUTED", qty=QTY, px=BID)
        balance = (await flow.account()).balance
        await flow.report(tp["lifecycle_id"], "EXECUTED", qty=QTY, px="1.09006")
        assert (await flow.account()).balance == balance
        assert (await flow.order(setup.order_id)).close_reason is CloseReason.STOPLOSS
        # the close worker asked the LP to cancel the TP after the SL filled
        assert flow.request(RequestKind.CANCEL_TP, setup.order_id)
        assert isinstance(services.bus, InMemoryBus)
        dead = await drain(services.bus, services.queues.dlq)
    assert [m.headers["x-reason"] for m in dead] == ["needs_review"]
    line = read_logs.one("worker_close", "CLOSE:DLQ")
    assert line.level == "ERROR" and line.get("order_id") == setup.order_id
    assert any("[CLOSE:DLQ]" in text for text in read_logs.lines("provider_errors"))


async def test_malformed_and_unknown_reports_are_dead_lettered(
    services: Services, read_logs: LogReader
) -> None:
    async with Flow.running(services) as flow:
        await flow.raw(b"8=FIX.4.4|35=8|39=2|garbage")
        await flow.raw(orjson.dumps({"type": "8", "exec_id": "x1", "ord_status": "0"}))
        await flow.report("no-such-lifecycle", "EXECUTED", qty=QTY, px=ASK)
        await flow.settle()
        assert isinstance(services.bus, InMemoryBus)
        dead = await drain(services.bus, services.queues.dlq)
    reasons = sorted(m.headers["x-reason"] for m in dead)
    assert reasons == ["malformed_report", "missing_lifecycle_id", "unknown_lifecycle_id"]
    assert all(m.headers["x-original-queue"] == services.queues.reports for m in dead)
    lines = read_logs.find("dispatcher", "DISPATCH:DLQ")
    assert sorted(r.get("reason") or "" for r in lines) == reasons


async def test_two_instances_of_one_worker_apply_each_fill_once(services: Services) -> None:
    async with Flow.running(services) as flow:
        second = Runner(services, worker_consumer(services, "open"))
        await second.start()
        try:
            setups = [await flow.open_request() for _ in range(6)]
            for setup in setups:
                exec_id = f"F-{setup.order_id}"
                for _ in range(2):  # each fill twice: the two instances race on it
                    await flow.report(
                        setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, exec_id=exec_id,
                        settle=False,
                    )  # fmt: skip
            await flow.settle()
        finally:
            await second.stop()
        account = await flow.account()
        assert sorted(p.order_id for p in account.positions) == sorted(s.order_id for s in setups)
        for setup in setups:
            assert (await flow.event_kinds(setup.order_id)).count("ORDER_OPENED") == 1
        stats = services.logger("worker_open").stats
        assert (stats.count("success"), stats.count("skipped")) == (6, 6)


async def test_shutdown_with_messages_in_flight_loses_nothing(services: Services) -> None:
    async with Flow.running(services) as flow:
        setups = [await flow.open_request() for _ in range(8)]
        for setup in setups:
            await flow.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK, settle=False)
        # stop while the fills are delivered but not yet applied: they go back to the queue
        await flow.pipeline.stop(timeout_s=0.0)
        statuses = [(await flow.order(s.order_id)).status for s in setups]
        assert statuses.count(OrderStatus.OPEN) < len(setups)
        restarted = EmbeddedPipeline(services)
        await restarted.start()
        try:
            await restarted.drain()
        finally:
            await restarted.stop()
        account = await flow.account()
        assert len(account.positions) == 8
        margin = sum((p.margin_per_lot_usd for p in account.positions), Decimal(0))
        assert account.reservations == () and margin > 0
        for setup in setups:
            order = await flow.order(setup.order_id)
            assert order.status is OrderStatus.OPEN and len(order.applied_exec_ids) == 1
            assert (await flow.event_kinds(setup.order_id)).count("ORDER_OPENED") == 1
