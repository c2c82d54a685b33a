"""Each worker end to end through dispatcher and runner: state, published effects, log lines."""

from __future__ import annotations

from decimal import Decimal

import orjson

from execflow.domain.enums import LegState, OrderStatus, OrderType
from execflow.pipeline.services import Services
from tests.pipeline.conftest import Book, LogReader, Pipeline

D = Decimal
SL = D("1.07000")
TP = D("1.10000")


async def test_open_fill_opens_the_position_and_requests_sl_tp(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1", sl=SL, tp=TP)
    await pipeline.fill("o1-open", "X1")

    order = await book.order("o1")
    account = await book.account()
    assert order.status is OrderStatus.OPEN
    assert order.open_price == D("1.08503")  # avg 1.08502 + half spread 0.00001
    assert order.margin == D("542.52")
    assert order.entry_commission == D("1.75")
    assert order.sl.state is LegState.REQUESTED and order.tp.state is LegState.REQUESTED
    assert account.used_margin_executed == D("542.52")
    assert account.reservations == ()

    [event] = await pipeline.db_events()
    body = orjson.loads(event.body)
    assert (body["type"], body["kind"], body["exec_id"]) == ("DbEvent", "ORDER_OPENED", "X1")
    assert event.message_id == body["event_id"] == "o1:X1:ORDER_OPENED"
    assert event.headers["trace_id"] == "trace1"
    requests = await pipeline.requests()
    assert [(r["kind"], r["lifecycle_id"]) for r in requests] == [
        ("PLACE_SL", "o1-sl-1"),
        ("PLACE_TP", "o1-tp-1"),
    ]
    # The lifecycle of each follow-up is registered before the request leaves.
    assert await services.state.get_lifecycle("o1-sl-1") == {
        "lifecycle_id": "o1-sl-1",
        "account_id": "live:6",
        "order_id": "o1",
        "kind": "PLACE_SL",
    }

    success = read_logs.one("worker_open", "OPEN:SUCCESS")
    assert success.level == "INFO"
    assert success.fields["order_id"] == "o1"
    assert success.fields["user"] == "live:6"
    assert success.fields["symbol"] == "EURUSD"
    assert success.fields["side"] == "BUY"
    assert success.fields["status"] == "OPEN"
    assert success.fields["open_price"] == "1.08503"
    assert success.fields["margin"] == "542.52"
    assert success.fields["entry_commission"] == "1.75"
    assert success.fields["trace_id"] == "trace1"
    assert "processing_time_ms" in success.fields
    sltp = read_logs.find("worker_open", "OPEN:SLTP_REQUESTED")
    assert [(r.fields["leg"], r.fields["price"]) for r in sltp] == [
        ("SL", "1.07000"),
        ("TP", "1.10000"),
    ]
    [calc] = [c for c in read_logs.calculations() if c["event.action"] == "ORDER_OPEN_CALC"]
    assert calc["order_id"] == "o1"
    assert calc["trace.id"] == "trace1"
    assert calc["outputs"]["margin_usd"] == "542.52"

    stats = pipeline.runners[1].log.stats
    assert [
        stats.count(c) for c in ("orders_opened", "margin_calculations", "commission_calculations")
    ] == [1, 1, 1]


async def test_partial_fill_updates_progress(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.send("o1-open", "X1", "PARTIALLY_FILLED", cum_qty="0.2", avg_px="1.08502")
    order = await book.order("o1")
    assert (order.status, order.cum_qty) == (OrderStatus.QUEUED, D("0.2"))
    assert read_logs.one("worker_open", "OPEN:PARTIAL_FILL").fields["cum_qty"] == "0.2"
    assert read_logs.one("worker_open", "OPEN:SUCCESS").fields["status"] == "QUEUED"
    await pipeline.fill("o1-open", "X2")
    assert (await book.order("o1")).status is OrderStatus.OPEN


async def test_close_fill_books_profit_and_balance(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")
    await book.close("o1")
    await pipeline.fill("o1-close", "X2", px="1.08600")

    order = await book.order("o1")
    account = await book.account()
    assert order.status is OrderStatus.CLOSED
    assert order.close_price == D("1.08599")
    assert order.profit == D("48.00")  # (1.08599 - 1.08503) * 0.5 * 100000
    assert order.net_profit == D("44.50")  # minus 1.75 entry and 1.75 exit commission
    assert account.balance == D("10044.50")
    assert account.used_margin_executed == 0

    line = read_logs.one("worker_close", "CLOSE:SUCCESS")
    assert line.fields["status"] == "CLOSED"
    assert line.fields["close_reason"] == "CLOSE"
    assert line.fields["net_profit"] == "44.50"
    assert line.fields["balance"] == "10044.50"
    [calc] = [c for c in read_logs.calculations() if c["event.action"] == "ORDER_CLOSE_CALC"]
    assert calc["order_id"] == "o1"
    stats = pipeline.runners[2].log.stats
    assert (stats.count("orders_closed"), stats.count("close_calculations")) == (1, 1)


async def test_legs_activate_then_sl_fill_closes_and_cancels_the_tp(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1", sl=SL, tp=TP)
    await pipeline.fill("o1-open", "X1")
    sl_request, tp_request = await pipeline.requests()
    # The LP echoes the levels it was sent (client level shifted by the half spread).
    assert (sl_request["stop_px"], tp_request["price"]) == ("1.07001", "1.10001")
    await pipeline.send("o1-sl-1", "S1", "PENDING", stop_px=sl_request["stop_px"])
    await pipeline.send("o1-tp-1", "T1", "PENDING", price=tp_request["price"])
    order = await book.order("o1")
    assert (order.sl.state, order.sl.price) == (LegState.ACTIVE, SL)
    assert (order.tp.state, order.tp.price) == (LegState.ACTIVE, TP)
    assert read_logs.one("worker_stoploss", "STOPLOSS:SUCCESS").fields["leg_state"] == "ACTIVE"
    assert read_logs.one("worker_stoploss", "STOPLOSS:LEG_ACTIVATED").fields["price"] == "1.07000"
    assert read_logs.one("worker_takeprofit", "TAKEPROFIT:SUCCESS").fields["leg"] == "TP"

    # The stop loss triggers: the close worker closes, then cancels the take profit.
    await pipeline.fill("o1-sl-1", "S2", px="1.07001")
    order = await book.order("o1")
    assert (order.status, order.close_reason.value if order.close_reason else None) == (
        OrderStatus.CLOSED,
        "STOPLOSS",
    )
    [cancel] = await pipeline.requests()
    assert (cancel["kind"], cancel["lifecycle_id"]) == ("CANCEL_TP", "o1-tp-1-cancel")
    sent = read_logs.one("worker_close", "CLOSE:COUNTERPART_CANCEL_SENT")
    assert (sent.fields["cancel_kind"], sent.fields["order_id"]) == ("CANCEL_TP", "o1")
    assert pipeline.runners[2].log.stats.count("counterpart_cancels") == 1

    # The LP confirms the cancel: the cancel worker marks the leg cancelled.
    await pipeline.send("o1-tp-1-cancel", "T2", "CANCELLED")
    assert (await book.order("o1")).tp.state is LegState.CANCELLED
    line = read_logs.one("worker_cancel", "CANCEL:SUCCESS")
    assert line.fields["cancelled"] == "TP"
    assert pipeline.runners[4].log.stats.count("tp_cancels") == 1


async def test_active_leg_modified_by_the_lp(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1", tp=TP)
    await pipeline.fill("o1-open", "X1")
    await pipeline.send("o1-tp-1", "T1", "PENDING", price="1.10001")
    await pipeline.send("o1-tp-1", "T2", "MODIFY", price="1.11001")
    assert (await book.order("o1")).tp.price == D("1.11000")
    updated = read_logs.one("worker_takeprofit", "TAKEPROFIT:PLACEMENT_UPDATED")
    assert (updated.fields["old_price"], updated.fields["new_price"]) == ("1.10000", "1.11000")
    stats = pipeline.runners[7].log.stats
    assert (stats.count("legs_activated"), stats.count("legs_modified")) == (1, 1)


async def test_pending_order_accepted_then_modified(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o2", order_type=OrderType.BUY_LIMIT, price=D("1.08000"))
    await pipeline.send("o2-open", "P1", "PENDING", price="1.07999")
    assert (await book.order("o2")).status is OrderStatus.PENDING
    accepted = read_logs.one("worker_pending", "PENDING:SUCCESS")
    assert (accepted.fields["status"], accepted.fields["requested_price"]) == ("PENDING", "1.08000")

    await book.modify("o2", D("1.07500"))
    await pipeline.send("o2-modify", "P2", "MODIFY", price="1.07499")
    order = await book.order("o2")
    assert (order.status, order.requested_price) == (OrderStatus.PENDING, D("1.07500"))
    updated = read_logs.one("worker_pending", "PENDING:PLACEMENT_UPDATED")
    assert (updated.fields["old_price"], updated.fields["new_price"]) == ("1.08000", "1.07500")
    stats = pipeline.runners[3].log.stats
    assert (stats.count("orders_pending"), stats.count("orders_modified")) == (1, 1)


async def test_pending_order_cancelled_releases_the_reservation(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o2", order_type=OrderType.BUY_LIMIT, price=D("1.08000"))
    reserved = (await book.account()).used_margin_all
    assert reserved > 0
    await pipeline.send("o2-open", "P1", "PENDING", price="1.07999")
    await book.cancel("o2")
    await pipeline.send("o2-cancel", "C1", "CANCELLED")
    assert (await book.order("o2")).status is OrderStatus.CANCELLED
    assert (await book.account()).used_margin_all == 0
    line = read_logs.one("worker_cancel", "CANCEL:SUCCESS")
    assert (line.fields["cancelled"], line.fields["reserved_margin_released"]) == (
        "ORDER",
        str(reserved),
    )
    assert pipeline.runners[4].log.stats.count("pending_cancels") == 1
    [calc] = [c for c in read_logs.calculations() if c["event.action"] == "MARGIN_RELEASE"]
    assert calc["order_id"] == "o2"


async def test_rejected_market_order_releases_the_reservation(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.send("o1-open", "R1", "REJECTED", reason="no liquidity")
    order = await book.order("o1")
    assert (order.status, order.reason) == (OrderStatus.REJECTED, "no liquidity")
    assert (await book.account()).used_margin_all == 0
    line = read_logs.one("worker_reject", "REJECT:SUCCESS")
    assert line.fields["rejection_type"] == "ORDER_PLACEMENT"
    assert line.fields["reason"] == "no liquidity"
    assert line.fields["status"] == "REJECTED"
    stats = pipeline.runners[5].log.stats
    assert [
        stats.count(c) for c in ("placement_rejects", "non_placement_rejects", "margin_updates")
    ] == [1, 0, 1]


async def test_rejected_close_reopens_the_position(
    book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")
    await book.close("o1")
    await pipeline.send("o1-close", "R1", "REJECTED", reason="market closed")
    assert (await book.order("o1")).status is OrderStatus.OPEN
    line = read_logs.one("worker_reject", "REJECT:SUCCESS")
    assert line.fields["rejection_type"] == "CLOSE"
    stats = pipeline.runners[5].log.stats
    assert (stats.count("non_placement_rejects"), stats.count("margin_updates")) == (1, 0)


async def test_every_worker_writes_its_own_file_with_its_counters_on_stats_lines(
    services: Services, book: Book, pipeline: Pipeline, read_logs: LogReader
) -> None:
    await book.submit("o1")
    await pipeline.fill("o1-open", "X1")
    await pipeline.stop()
    final = read_logs.find("worker_open", "STATS")[-1]
    assert final.fields["orders_opened"] == "1"
    assert final.fields["component"] == "worker_open"
    reject_stats = read_logs.find("worker_reject", "STATS")
    assert reject_stats[-1].fields["placement_rejects"] == "0"
    dispatch = read_logs.find("dispatcher", "STATS")[-1]
    assert dispatch.fields["routed.worker_open"] == "1"
    assert dispatch.fields["ignored"] == "0"
    await pipeline.start()  # the fixture stops it again
