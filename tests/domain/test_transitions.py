"""Every transition and every outcome type, on hand-built orders."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from execflow.domain.effects import DbEvent, EventKind, LpRequest
from execflow.domain.enums import (
    CloseReason,
    LegState,
    OrderStatus,
    OrderType,
    ReportStatus,
    RequestKind,
    Side,
)
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Leg, Order, Prices
from execflow.domain.outcomes import (
    Applied,
    Duplicate,
    Invalid,
    Mismatch,
    NeedsReview,
    Outcome,
    Stale,
    TooEarly,
)
from execflow.domain.routing import Worker
from execflow.domain.statemachine import check_leg_edge, check_order_edge
from execflow.domain.transitions import OUTBOX_SIZE, apply
from execflow.errors import TransitionError
from tests.domain.factories import EURUSD, NOW, PRICES, account, market_order
from tests.domain.harness import fill, report

D = Decimal
S = ReportStatus
K = RequestKind
O = OrderStatus  # noqa: E741


def _open_order(**changes: object) -> Order:
    base = market_order(
        status=O.OPEN,
        cum_qty=D("0.5"),
        avg_px=D("1.085"),
        open_price=D("1.08501"),
        sl=Leg(LegState.ACTIVE, D("1.08"), "o1-sl-1", None, 1),
        tp=Leg(LegState.ACTIVE, D("1.09"), "o1-tp-1", None, 1),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _pending_order(**changes: object) -> Order:
    base = market_order(
        order_type=OrderType.BUY_LIMIT,
        status=O.PENDING,
        requested_price=D("1.08"),
        lifecycle_id="o1-place",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _run(
    worker: Worker, order: Order, rep: ExecutionReport, kind: RequestKind, prices: Prices = PRICES
) -> Outcome:
    return apply(worker, order, account(), EURUSD, prices, rep, kind, NOW)


def _kind(outcome: Outcome) -> type:
    return type(outcome)


CASES: list[tuple[str, Worker, Order, ExecutionReport, RequestKind, type, str]] = [
    # open
    ("open final", Worker.OPEN, market_order(), fill("o1-open", "e", "0.5", "1.085"), K.OPEN,
     Applied, ""),
    ("open partial", Worker.OPEN, market_order(),
     fill("o1-open", "e", "0.2", "1.085", S.PARTIALLY_FILLED), K.OPEN, Applied, ""),
    ("open overfill", Worker.OPEN, market_order(), fill("o1-open", "e", "0.6", "1.085"), K.OPEN,
     Mismatch, "overfill"),
    ("open older partial", Worker.OPEN, market_order(cum_qty=D("0.3"), avg_px=D("1.085")),
     fill("o1-open", "e", "0.2", "1.085", S.PARTIALLY_FILLED), K.OPEN, Stale, "fill_not_newer"),
    ("open executed short", Worker.OPEN, market_order(), fill("o1-open", "e", "0.2", "1.085"),
     K.OPEN, NeedsReview, "executed_below_order_quantity"),
    ("open on open", Worker.OPEN, _open_order(), fill("o1-open", "e", "0.5", "1.085"), K.OPEN,
     Stale, "already_open"),
    ("open on rejected", Worker.OPEN, market_order(status=O.REJECTED),
     fill("o1-open", "e", "0.5", "1.085"), K.OPEN, NeedsReview, "fill_on_final_order"),
    ("open wrong kind", Worker.OPEN, market_order(), fill("o1-open", "e", "0.5", "1.085"),
     K.CLOSE, Invalid, "not_an_opening_fill"),
    ("open kind/status", Worker.OPEN, _pending_order(), fill("o1-open", "e", "0.5", "1.085"),
     K.OPEN, Invalid, "status_does_not_match_request_kind"),
    ("pending filled", Worker.OPEN, _pending_order(status=O.CANCELLING),
     fill("o1-place", "e", "0.5", "1.07999"), K.CANCEL_PENDING, Applied, ""),
    # close
    ("close manual", Worker.CLOSE, _open_order(status=O.CLOSING, close_lifecycle_id="c1"),
     fill("c1", "e", "0.5", "1.0875"), K.CLOSE, Applied, ""),
    ("close before open", Worker.CLOSE, market_order(), fill("o1-sl-1", "e", "0.5", "1.08"),
     K.PLACE_SL, TooEarly, "position_not_open"),
    ("close both legs", Worker.CLOSE,
     _open_order(status=O.CLOSED, close_reason=CloseReason.STOPLOSS, close_lifecycle_id="o1-sl-1"),
     fill("o1-tp-1", "e", "0.5", "1.09"), K.PLACE_TP, NeedsReview, "both_legs_filled"),
    ("close twice", Worker.CLOSE,
     _open_order(status=O.CLOSED, close_reason=CloseReason.CLOSE, close_lifecycle_id="c1"),
     fill("c2", "e", "0.5", "1.09"), K.CLOSE, NeedsReview, "closed_twice"),
    ("close late partial", Worker.CLOSE,
     _open_order(status=O.CLOSED, close_reason=CloseReason.CLOSE, close_lifecycle_id="c1"),
     fill("c1", "e", "0.2", "1.09", S.PARTIALLY_FILLED), K.CLOSE, Stale, "already_closed"),
    ("close without request", Worker.CLOSE, _open_order(), fill("c9", "e", "0.5", "1.09"),
     K.CLOSE, NeedsReview, "close_fill_without_close_request"),
    ("close overfill", Worker.CLOSE, _open_order(), fill("o1-sl-1", "e", "0.7", "1.08"),
     K.PLACE_SL, Mismatch, "overfill"),
    ("close partial", Worker.CLOSE, _open_order(),
     fill("o1-sl-1", "e", "0.2", "1.08", S.PARTIALLY_FILLED), K.PLACE_SL, Applied, ""),
    ("close old leg", Worker.CLOSE, _open_order(), fill("o1-sl-0", "e", "0.5", "1.08"),
     K.PLACE_SL, NeedsReview, "leg_fill_for_inactive_leg"),
    ("close wrong kind", Worker.CLOSE, _open_order(), fill("o1-open", "e", "0.5", "1.08"),
     K.OPEN, Invalid, "not_a_closing_fill"),
    # pending
    ("pending accepted", Worker.PENDING, _pending_order(status=O.PENDING_QUEUED),
     report("o1-place", "e", S.PENDING, "1.07999"), K.PLACE_PENDING, Applied, ""),
    ("pending modified", Worker.PENDING, _pending_order(status=O.MODIFYING, new_price=D("1.07")),
     report("m1", "e", S.MODIFY), K.MODIFY_PENDING, Applied, ""),
    ("pending dup ack", Worker.PENDING, _pending_order(),
     report("o1-place", "e", S.PENDING), K.PLACE_PENDING, Stale, "already_accepted"),
    ("pending after fill", Worker.PENDING, _open_order(),
     report("o1-place", "e", S.PENDING), K.PLACE_PENDING, Stale, "order_moved_on"),
    ("pending too early", Worker.PENDING, _pending_order(status=O.PENDING_QUEUED),
     report("m1", "e", S.MODIFY), K.MODIFY_PENDING, TooEarly, "modification_not_sent"),
    ("pending wrong status", Worker.PENDING, _pending_order(),
     report("o1-place", "e", S.REJECTED), K.PLACE_PENDING, Invalid, "not_a_pending_update"),
    ("pending on market", Worker.PENDING, market_order(status=O.PENDING_QUEUED),
     report("o1-open", "e", S.PENDING), K.PLACE_PENDING, Invalid, "not_a_pending_order"),
    # cancel
    ("cancel pending", Worker.CANCEL, _pending_order(status=O.CANCELLING),
     report("x1", "e", S.CANCELLED), K.CANCEL_PENDING, Applied, ""),
    ("cancel leg", Worker.CANCEL,
     _open_order(sl=Leg(LegState.CANCEL_REQUESTED, D("1.08"), "o1-sl-1", "o1-sl-1-cancel", 1)),
     report("o1-sl-1-cancel", "e", S.CANCELLED), K.CANCEL_SL, Applied, ""),
    ("cancel leg early", Worker.CANCEL, market_order(),
     report("o1-sl-1", "e", S.CANCELLED), K.PLACE_SL, TooEarly, "position_not_open"),
    ("cancel old leg", Worker.CANCEL, _open_order(),
     report("o1-sl-0", "e", S.CANCELLED), K.PLACE_SL, Stale, "other_leg_lifecycle"),
    ("cancel after fill", Worker.CANCEL, _open_order(),
     report("o1-place", "e", S.CANCELLED), K.PLACE_PENDING, Stale, "order_moved_on"),
    ("cancel partial", Worker.CANCEL, _pending_order(cum_qty=D("0.1")),
     report("o1-place", "e", S.CANCELLED), K.PLACE_PENDING, NeedsReview,
     "partially_filled_then_cancelled"),
    ("cancel close kind", Worker.CANCEL, _open_order(),
     report("c1", "e", S.CANCELLED), K.CLOSE, Invalid, "kind_not_cancellable"),
    # reject
    ("reject open", Worker.REJECT, market_order(), report("o1-open", "e", S.REJECTED, None, "nm"),
     K.OPEN, Applied, ""),
    ("reject killed", Worker.REJECT, market_order(), report("o1-open", "e", S.CANCELLED),
     K.OPEN, Applied, ""),
    ("reject after fill", Worker.REJECT, _open_order(), report("o1-open", "e", S.REJECTED),
     K.OPEN, NeedsReview, "rejected_after_fill"),
    ("reject twice", Worker.REJECT, market_order(status=O.REJECTED),
     report("o1-open", "e", S.REJECTED), K.OPEN, Stale, "order_moved_on"),
    ("reject modify", Worker.REJECT, _pending_order(status=O.MODIFYING, new_price=D("1.07")),
     report("m1", "e", S.REJECTED), K.MODIFY_PENDING, Applied, ""),
    ("reject close", Worker.REJECT, _open_order(status=O.CLOSING, close_lifecycle_id="c1"),
     report("c1", "e", S.REJECTED), K.CLOSE, Applied, ""),
    ("reject sl", Worker.REJECT,
     _open_order(sl=Leg(LegState.REQUESTED, D("1.08"), "o1-sl-1", None, 1)),
     report("o1-sl-1", "e", S.REJECTED), K.PLACE_SL, Applied, ""),
    ("reject tp cancel", Worker.REJECT,
     _open_order(tp=Leg(LegState.CANCEL_REQUESTED, D("1.09"), "o1-tp-1", "o1-tp-1-cancel", 1)),
     report("o1-tp-1-cancel", "e", S.REJECTED), K.CANCEL_TP, Applied, ""),
    ("reject sl early", Worker.REJECT, market_order(), report("o1-sl-1", "e", S.REJECTED),
     K.PLACE_SL, TooEarly, "position_not_open"),
    ("reject not reject", Worker.REJECT, market_order(), report("o1-open", "e", S.PENDING),
     K.OPEN, Invalid, "not_a_rejection"),
    ("reject partial", Worker.REJECT, market_order(cum_qty=D("0.1")),
     report("o1-open", "e", S.CANCELLED), K.OPEN, NeedsReview, "partially_filled_then_killed"),
    # stoploss / takeprofit
    ("sl active", Worker.STOPLOSS,
     _open_order(sl=Leg(LegState.REQUESTED, D("1.08"), "o1-sl-1", None, 1)),
     report("o1-sl-1", "e", S.PENDING, "1.08001"), K.PLACE_SL, Applied, ""),
    ("tp modified", Worker.TAKEPROFIT, _open_order(),
     report("o1-tp-1", "e", S.MODIFY, "1.09501"), K.PLACE_TP, Applied, ""),
    ("tp same price", Worker.TAKEPROFIT, _open_order(),
     report("o1-tp-1", "e", S.MODIFY, "1.09001"), K.PLACE_TP, Stale, "price_unchanged"),
    ("sl early", Worker.STOPLOSS, market_order(), report("o1-sl-1", "e", S.PENDING),
     K.PLACE_SL, TooEarly, "position_not_open"),
    ("sl closed", Worker.STOPLOSS, _open_order(status=O.CLOSED),
     report("o1-sl-1", "e", S.PENDING), K.PLACE_SL, Stale, "order_final"),
    ("sl wrong kind", Worker.STOPLOSS, _open_order(), report("o1-tp-1", "e", S.PENDING),
     K.PLACE_TP, Invalid, "not_a_leg_update"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("worker", "order", "rep", "kind", "expected", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_outcomes(
    worker: Worker,
    order: Order,
    rep: ExecutionReport,
    kind: RequestKind,
    expected: type,
    reason: str,
) -> None:
    outcome = _run(worker, order, rep, kind)
    assert isinstance(outcome, expected), outcome
    if reason:
        assert getattr(outcome, "reason", None) == reason
    if isinstance(outcome, Applied):
        assert outcome.order.applied_exec_ids == (*order.applied_exec_ids, rep.exec_id)
        assert outcome.order.version == order.version + 1
        assert outcome.order.outbox[-1].effects == outcome.effects
        assert isinstance(outcome.effects[0], DbEvent)
        again = _run(worker, outcome.order, rep, kind)
        assert again == Duplicate(outcome.effects)


def test_every_worker_and_outcome_type_is_covered() -> None:
    covered = {(c[1], c[5]) for c in CASES}
    assert {w for w, _ in covered} == set(Worker)
    assert {t for _, t in covered} == {Applied, Stale, TooEarly, NeedsReview, Mismatch, Invalid}


def test_missing_rate_on_close_is_too_early() -> None:
    gbp = replace(EURUSD, symbol="EURGBP", profit_currency="GBP")
    order = _open_order(symbol="EURGBP", status=O.CLOSING, close_lifecycle_id="c1")
    outcome = apply(
        Worker.CLOSE, order, account(), gbp, Prices(), fill("c1", "e", "0.5", "0.85"), K.CLOSE, NOW
    )
    assert outcome == TooEarly("missing_conversion_rate")


def test_open_with_sl_tp_sends_the_leg_requests_at_lp_levels() -> None:
    order = market_order(sl=Leg(price=D("1.08")), tp=Leg(price=D("1.09")))
    outcome = _run(Worker.OPEN, order, fill("o1-open", "e", "0.5", "1.085"), K.OPEN)
    assert isinstance(outcome, Applied)
    requests = [e.request for e in outcome.effects if isinstance(e, LpRequest)]
    assert [(r.kind, r.lifecycle_id, r.side) for r in requests] == [
        (K.PLACE_SL, "o1-sl-1", Side.SELL),
        (K.PLACE_TP, "o1-tp-1", Side.SELL),
    ]
    assert requests[0].stop_px == D("1.08001") and requests[1].price == D("1.09001")
    assert outcome.order.sl.state is LegState.REQUESTED


def test_triggered_stop_loss_cancels_the_take_profit() -> None:
    outcome = _run(Worker.CLOSE, _open_order(), fill("o1-sl-1", "e", "0.5", "1.08001"), K.PLACE_SL)
    assert isinstance(outcome, Applied)
    assert outcome.order.close_reason is CloseReason.STOPLOSS
    assert outcome.order.close_price == D("1.08000")
    assert outcome.order.sl.state is LegState.TRIGGERED
    assert outcome.order.tp.state is LegState.CANCEL_REQUESTED
    (request,) = [e.request for e in outcome.effects if isinstance(e, LpRequest)]
    assert (request.kind, request.lifecycle_id, request.orig_lifecycle_id) == (
        K.CANCEL_TP,
        "o1-tp-1-cancel",
        "o1-tp-1",
    )
    assert outcome.effects[0].kind is EventKind.ORDER_CLOSED


def test_the_outbox_is_bounded_and_the_ledger_is_not() -> None:
    order = _pending_order()
    for n in range(OUTBOX_SIZE + 3):
        moved = _run(
            Worker.PENDING, order, report("o1-place", f"e{n}", S.MODIFY, f"1.07{n:02d}"),
            K.PLACE_PENDING,
        )  # fmt: skip
        assert isinstance(moved, Applied)
        order = moved.order
    assert len(order.outbox) == OUTBOX_SIZE
    assert len(order.applied_exec_ids) == OUTBOX_SIZE + 3
    # an exec_id whose outbox entry aged out is still a duplicate, with nothing to re-send
    oldest = _run(Worker.PENDING, order, report("o1-place", "e0", S.MODIFY), K.PLACE_PENDING)
    assert oldest == Duplicate(())


def test_partial_fills_accumulate_from_last_qty_only() -> None:
    first = ExecutionReport(
        "e1", S.PARTIALLY_FILLED, "o1-open", last_qty=D("0.2"), last_px=D("1.08")
    )
    second = ExecutionReport("e2", S.EXECUTED, "o1-open", last_qty=D("0.3"), last_px=D("1.09"))
    one = _run(Worker.OPEN, market_order(), first, K.OPEN)
    assert isinstance(one, Applied)
    two = _run(Worker.OPEN, one.order, second, K.OPEN)
    assert isinstance(two, Applied)
    assert (two.order.cum_qty, two.order.avg_px) == (D("0.5"), D("1.086"))


def test_state_machine_refuses_undeclared_edges() -> None:
    with pytest.raises(TransitionError):
        check_order_edge(O.CLOSED, O.OPEN, "open")
    with pytest.raises(TransitionError):
        check_leg_edge(LegState.TRIGGERED, LegState.ACTIVE, "reject")
