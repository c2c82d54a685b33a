"""The LP book: fills, resting orders crossing, legs, cancel/modify, rejects, idempotency."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from execflow.clock import FakeClock
from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import Quote
from execflow.sim.book import LpBook, LpStatus
from tests.sim.conftest import make_book

Q = Quote("EURUSD", Decimal("1.10000"), Decimal("1.10002"))


def req(
    lid: str,
    kind: RequestKind,
    side: Side = Side.BUY,
    order_type: LpOrderType = LpOrderType.MARKET,
    qty: str = "0.10",
    order_id: str = "o1",
    orig: str | None = None,
    price: str | None = None,
    stop_px: str | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        lifecycle_id=lid,
        kind=kind,
        account_id="live:1",
        order_id=order_id,
        symbol="EURUSD",
        side=side,
        order_type=order_type,
        qty=Decimal(qty),
        orig_lifecycle_id=orig,
        price=None if price is None else Decimal(price),
        stop_px=None if stop_px is None else Decimal(stop_px),
    )


def statuses(answer_reports: object) -> list[ReportStatus]:
    return [o.report.ord_status for o in answer_reports]  # type: ignore[attr-defined]


def test_market_buy_fills_at_ask_and_sell_at_bid(clock: FakeClock) -> None:
    book = make_book(clock)
    buy = book.handle(req("o1", RequestKind.OPEN), Q)
    sell = book.handle(req("o2", RequestKind.OPEN, Side.SELL, order_id="o2"), Q)
    assert statuses(buy.reports) == [ReportStatus.EXECUTED]
    assert buy.reports[0].report.avg_px == Decimal("1.10002")
    assert buy.reports[0].report.cum_qty == Decimal("0.10")
    assert buy.reports[0].report.lifecycle_id == "o1"
    assert sell.reports[0].report.avg_px == Decimal("1.10000")
    assert book.position("o1") == Decimal("0.10")


def test_pending_limit_rests_then_fills_when_the_price_crosses(clock: FakeClock) -> None:
    book = make_book(clock)
    answer = book.handle(
        req("p1", RequestKind.PLACE_PENDING, order_type=LpOrderType.LIMIT, price="1.09990"), Q
    )
    assert statuses(answer.reports) == [ReportStatus.PENDING]
    assert answer.reports[0].report.price == Decimal("1.09990")
    assert book.on_quotes([Quote("EURUSD", Decimal("1.09995"), Decimal("1.09997"))]) == []
    fills = book.on_quotes([Quote("EURUSD", Decimal("1.09985"), Decimal("1.09987"))])
    assert statuses(fills) == [ReportStatus.EXECUTED]
    assert fills[0].report.avg_px == Decimal("1.09990")
    assert fills[0].report.lifecycle_id == "p1"
    assert book.position("o1") == Decimal("0.10")
    assert book.on_quotes([Quote("EURUSD", Decimal("1.09900"), Decimal("1.09902"))]) == []


def test_stop_order_fills_at_market_once_triggered(clock: FakeClock) -> None:
    book = make_book(clock)
    book.handle(
        req("p1", RequestKind.PLACE_PENDING, order_type=LpOrderType.STOP, stop_px="1.10010"), Q
    )
    fills = book.on_quotes([Quote("EURUSD", Decimal("1.10011"), Decimal("1.10013"))])
    assert [f.report.avg_px for f in fills] == [Decimal("1.10013")]


def test_stop_loss_fills_on_cross_and_the_other_leg_never_reopens(clock: FakeClock) -> None:
    book = make_book(clock)
    book.handle(req("o1", RequestKind.OPEN), Q)
    sl = book.handle(
        req("o1-sl-1", RequestKind.PLACE_SL, Side.SELL, LpOrderType.STOP, stop_px="1.09950"), Q
    )
    tp = book.handle(
        req("o1-tp-1", RequestKind.PLACE_TP, Side.SELL, LpOrderType.LIMIT, price="1.10100"), Q
    )
    assert statuses(sl.reports) == statuses(tp.reports) == [ReportStatus.PENDING]
    fills = book.on_quotes([Quote("EURUSD", Decimal("1.09940"), Decimal("1.09942"))])
    assert [(f.report.lifecycle_id, f.report.ord_status) for f in fills] == [
        ("o1-sl-1", ReportStatus.EXECUTED)
    ]
    assert book.position("o1") == 0
    # the TP level is crossed now, but the position is flat: it waits for its cancel
    assert book.on_quotes([Quote("EURUSD", Decimal("1.10200"), Decimal("1.10202"))]) == []
    cancel = book.handle(
        req("o1-tp-1-cancel", RequestKind.CANCEL_TP, Side.SELL, LpOrderType.LIMIT, orig="o1-tp-1"),
        Q,
    )
    assert statuses(cancel.reports) == [ReportStatus.CANCELLED]
    assert cancel.reports[0].report.lifecycle_id == "o1-tp-1-cancel"
    assert cancel.reports[0].report.orig_lifecycle_id == "o1-tp-1"


def test_cancel_and_modify_of_a_resting_order(clock: FakeClock) -> None:
    book = make_book(clock)
    book.handle(
        req("p1", RequestKind.PLACE_PENDING, order_type=LpOrderType.LIMIT, price="1.09900"), Q
    )
    modified = book.handle(
        req(
            "p1-modify-v2",
            RequestKind.MODIFY_PENDING,
            order_type=LpOrderType.LIMIT,
            orig="p1",
            price="1.09950",
        ),
        Q,
    )
    assert statuses(modified.reports) == [ReportStatus.MODIFY]
    assert modified.reports[0].report.price == Decimal("1.09950")
    assert modified.reports[0].report.orig_lifecycle_id == "p1"
    order = book.order("p1")
    assert order is not None and order.clordid == "p1-modify-v2"
    cancelled = book.handle(req("p1-cancel-v3", RequestKind.CANCEL_PENDING, orig="p1-modify-v2"), Q)
    assert statuses(cancelled.reports) == [ReportStatus.CANCELLED]
    assert order.status is LpStatus.CANCELLED
    assert book.on_quotes([Quote("EURUSD", Decimal("1.09000"), Decimal("1.09002"))]) == []


def test_filled_after_modify_reports_under_the_latest_clordid(clock: FakeClock) -> None:
    book = make_book(clock)
    book.handle(
        req("p1", RequestKind.PLACE_PENDING, order_type=LpOrderType.LIMIT, price="1.09900"), Q
    )
    book.handle(
        req(
            "p1-m",
            RequestKind.MODIFY_PENDING,
            order_type=LpOrderType.LIMIT,
            orig="p1",
            price="1.09990",
        ),
        Q,
    )
    fills = book.on_quotes([Quote("EURUSD", Decimal("1.09980"), Decimal("1.09982"))])
    assert [(f.report.lifecycle_id, f.report.avg_px) for f in fills] == [
        ("p1-m", Decimal("1.09990"))
    ]


def test_cancel_after_the_fill_is_rejected_too_late(clock: FakeClock) -> None:
    book = make_book(clock)
    book.handle(
        req("p1", RequestKind.PLACE_PENDING, order_type=LpOrderType.LIMIT, price="1.10005"), Q
    )  # already crossed: rests, then fills at once
    answer = book.handle(req("p1-cancel", RequestKind.CANCEL_PENDING, orig="p1"), Q)
    assert statuses(answer.reports) == [ReportStatus.REJECTED]
    assert answer.reports[0].report.reason == "Too late to cancel"
    unknown = book.handle(req("x-cancel", RequestKind.CANCEL_PENDING, orig="nope"), Q)
    assert unknown.reports[0].report.reason == "Unknown order"


def test_close_without_a_position_is_rejected_and_close_flattens(clock: FakeClock) -> None:
    book = make_book(clock)
    flat = book.handle(req("c0", RequestKind.CLOSE, Side.SELL, order_id="zz"), Q)
    assert flat.reports[0].report.reason == "No open position"
    book.handle(req("o1", RequestKind.OPEN), Q)
    close = book.handle(req("o1-close-v2", RequestKind.CLOSE, Side.SELL, orig="o1"), Q)
    assert statuses(close.reports) == [ReportStatus.EXECUTED]
    assert close.reports[0].report.avg_px == Decimal("1.10000")
    assert book.position("o1") == 0


def test_reject_share_is_close_to_the_configured_rate(clock: FakeClock) -> None:
    book = make_book(clock, reject_rate=0.25)
    answers = [
        book.handle(req(f"o{i}", RequestKind.OPEN, order_id=f"o{i}"), Q) for i in range(2000)
    ]
    rejected = [a for a in answers if a.event == "REJECTED"]
    assert 400 <= len(rejected) <= 600
    assert all(a.reports[0].report.reason for a in rejected)
    assert {a.reports[0].report.ord_status for a in rejected} == {ReportStatus.REJECTED}


def test_partial_fills_add_up_and_end_executed(clock: FakeClock) -> None:
    book = make_book(clock, partial_rate=1.0)
    answer = book.handle(req("o1", RequestKind.OPEN, qty="0.37"), Q)
    reports = [o.report for o in answer.reports]
    assert len(reports) in (2, 3)
    assert [r.ord_status for r in reports[:-1]] == [ReportStatus.PARTIALLY_FILLED] * (
        len(reports) - 1
    )
    assert reports[-1].ord_status is ReportStatus.EXECUTED
    assert sum((r.last_qty or Decimal(0) for r in reports), Decimal(0)) == Decimal("0.37")
    assert [r.cum_qty for r in reports] == sorted(r.cum_qty or Decimal(0) for r in reports)
    assert reports[-1].leaves_qty == 0


def test_a_resent_request_gets_the_same_answer_and_no_second_order(clock: FakeClock) -> None:
    book = make_book(clock)
    first = book.handle(req("o1", RequestKind.OPEN), Q)
    again = book.handle(req("o1", RequestKind.OPEN), Q)
    assert again.resent and not first.resent
    assert [o.report.exec_id for o in again.reports] == [o.report.exec_id for o in first.reports]
    assert book.position("o1") == Decimal("0.10")


def test_exec_ids_are_unique(clock: FakeClock) -> None:
    book = make_book(clock, partial_rate=0.5, reject_rate=0.1)
    ids: list[str] = []
    for i in range(300):
        answer = book.handle(req(f"o{i}", RequestKind.OPEN, order_id=f"o{i}"), Q)
        ids.extend(o.report.exec_id for o in answer.reports)
    assert len(ids) == len(set(ids))


def test_double_fill_bug_fills_the_other_leg_of_the_position(clock: FakeClock) -> None:
    book = make_book(clock, double_fill_rate=1.0)
    book.handle(req("o1", RequestKind.OPEN), Q)
    book.handle(
        req("o1-sl-1", RequestKind.PLACE_SL, Side.SELL, LpOrderType.STOP, stop_px="1.09950"), Q
    )
    book.handle(
        req("o1-tp-1", RequestKind.PLACE_TP, Side.SELL, LpOrderType.LIMIT, price="1.10100"), Q
    )
    fills = book.on_quotes([Quote("EURUSD", Decimal("1.09940"), Decimal("1.09942"))])
    assert [(f.report.lifecycle_id, f.report.avg_px) for f in fills] == [
        ("o1-sl-1", Decimal("1.09940")),
        ("o1-tp-1", Decimal("1.10100")),
    ]


def test_the_book_remembers_a_bounded_number_of_answers(clock: FakeClock) -> None:
    book = make_book(clock)
    book.answers_kept = 3
    answers = [book.handle(req(f"L{n}", RequestKind.OPEN, order_id=f"o{n}"), Q) for n in range(5)]
    assert all(not a.resent for a in answers)
    # The three latest requests are still recognised when re-sent...
    assert book.handle(req("L4", RequestKind.OPEN, order_id="o4"), Q).resent
    assert book.handle(req("L2", RequestKind.OPEN, order_id="o2"), Q).resent
    # ...the oldest were forgotten, so the memory stops growing.
    assert not book.handle(req("L0", RequestKind.OPEN, order_id="o0"), Q).resent
    assert len(book._answered) == 3


def _one_round_trip(book: LpBook, n: int) -> None:
    """An order's whole life: open, SL and TP, a pending placed, modified and cancelled, close."""
    oid, pid = f"o{n}", f"p{n}"
    book.handle(req(oid, RequestKind.OPEN, order_id=oid), Q)
    sl = req(f"{oid}-sl-1", RequestKind.PLACE_SL, Side.SELL, LpOrderType.STOP, order_id=oid)
    book.handle(replace(sl, stop_px=Decimal("1.05000")), Q)
    tp = req(f"{oid}-tp-1", RequestKind.PLACE_TP, Side.SELL, LpOrderType.LIMIT, order_id=oid)
    book.handle(replace(tp, price=Decimal("1.15000")), Q)
    book.handle(req(f"{oid}-tp-1-cancel", RequestKind.CANCEL_TP, orig=f"{oid}-tp-1"), Q)
    limit = LpOrderType.LIMIT
    book.handle(
        req(pid, RequestKind.PLACE_PENDING, order_type=limit, order_id=pid, price="1.05"), Q
    )
    modify = req(f"{pid}-m", RequestKind.MODIFY_PENDING, order_type=limit, order_id=pid, orig=pid)
    book.handle(replace(modify, price=Decimal("1.06")), Q)
    book.handle(req(f"{pid}-c", RequestKind.CANCEL_PENDING, order_id=pid, orig=f"{pid}-m"), Q)
    book.handle(req(f"{oid}-close", RequestKind.CLOSE, Side.SELL, order_id=oid), Q)
    # the position is flat: the pipeline cancels the SL leg it had (parked at the LP)
    book.handle(req(f"{oid}-sl-1-cancel", RequestKind.CANCEL_SL, orig=f"{oid}-sl-1"), Q)


def test_the_book_stays_bounded_over_many_finished_orders(clock: FakeClock) -> None:
    book = make_book(clock)
    book.answers_kept = book.finished_kept = 50
    sizes = []
    for n in range(3_000):
        _one_round_trip(book, n)
        if n % 500 == 499:
            sizes.append(book.remembered())
    # nothing rests, nothing is open: only the two bounded memories hold anything
    bounded = {"clordids": 0, "finished": 50, "positions": 0, "legs": 0, "answers": 50}
    assert sizes[0] == sizes[-1] == bounded
    assert book.resting_count() == 0


def test_finished_orders_are_still_answered_while_a_resend_can_come(clock: FakeClock) -> None:
    book = make_book(clock)
    book.answers_kept = book.finished_kept = 50
    first = book.handle(req("o0", RequestKind.OPEN, order_id="o0"), Q)
    for n in range(1, 6):
        _one_round_trip(book, n)
    # a re-sent request gets the very same reports (same exec ids), no second order
    again = book.handle(req("o0", RequestKind.OPEN, order_id="o0"), Q)
    assert again.resent and again.reports == first.reports
    assert book.position("o0") == Decimal("0.10")
    # a cancel racing a recent fill is "too late" for the LP order, not "unknown"
    late = book.handle(req("o5-cancel", RequestKind.CANCEL_PENDING, orig="o5"), Q)
    assert late.reports[0].report.reason == "Too late to cancel"
    assert late.reports[0].report.lp_order_id is not None
    # an open position is still found by its close, long after its opening was forgotten
    for n in range(6, 200):
        _one_round_trip(book, n)
    assert book.order("o0") is None
    close = book.handle(req("o0-close", RequestKind.CLOSE, Side.SELL, order_id="o0"), Q)
    assert statuses(close.reports) == [ReportStatus.EXECUTED]
    assert book.remembered()["positions"] == 0
