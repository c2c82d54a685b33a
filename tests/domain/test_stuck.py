"""Stuck orders and operator resolutions: the pure rules (``domain.stuck``, ``.resolution``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from execflow.domain.effects import DbEvent, LpRequest
from execflow.domain.enums import LegKind, LegState, OrderStatus, ReportStatus, RequestKind, Side
from execflow.domain.models import Leg, Order, Reservation
from execflow.domain.outcomes import Applied
from execflow.domain.resolution import (
    OPERATOR_PROVIDER,
    OperatorNote,
    Plan,
    Refusal,
    Resolution,
    operator_exec_id,
    plan_resolution,
    with_note,
)
from execflow.domain.routing import Worker
from execflow.domain.stuck import InFlight, change_lifecycle_id, in_flight, is_stuck, may_wait
from execflow.domain.transitions import apply
from tests.domain.factories import EURUSD, NOW, PRICES, account, market_order

S = OrderStatus
K = RequestKind
AFTER_S = 300.0


def _open(**changes: object) -> Order:
    """A 0.5-lot EURUSD BUY position (OPEN unless ``status`` says otherwise)."""
    return market_order(**{"status": S.OPEN, "cum_qty": Decimal("0.5"), **changes})


def _note(resolution: Resolution = Resolution.REJECTED) -> OperatorNote:
    return OperatorNote("alice", "LP: never received", resolution)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (market_order(), (InFlight(K.OPEN, "o1-open"),)),
        (market_order(status=S.PENDING_QUEUED), (InFlight(K.PLACE_PENDING, "o1-open"),)),
        (
            market_order(status=S.MODIFYING, version=3),
            (InFlight(K.MODIFY_PENDING, "o1-modify-v3"),),
        ),
        (
            market_order(status=S.CANCELLING, version=4),
            (InFlight(K.CANCEL_PENDING, "o1-cancel-v4"),),
        ),
        (
            _open(status=S.CLOSING, close_lifecycle_id="o1-close-v5"),
            (InFlight(K.CLOSE, "o1-close-v5"),),
        ),
        (
            _open(sl=Leg(LegState.REQUESTED, Decimal("1.08"), "o1-sl-1")),
            (InFlight(K.PLACE_SL, "o1-sl-1", LegKind.SL),),
        ),
        (
            _open(
                sl=Leg(LegState.ACTIVE, Decimal("1.08"), "o1-sl-1"),
                tp=Leg(LegState.CANCEL_REQUESTED, Decimal("1.09"), "o1-tp-1", "o1-cancel_tp-v7"),
            ),
            (InFlight(K.CANCEL_TP, "o1-cancel_tp-v7", LegKind.TP),),
        ),
    ],
    ids=["queued", "pending_queued", "modifying", "cancelling", "closing", "sl", "tp_cancel"],
)
def test_in_flight_names_the_unanswered_request(
    order: Order, expected: tuple[InFlight, ...]
) -> None:
    assert in_flight(order) == expected


@pytest.mark.parametrize(
    "order",
    [
        market_order(status=S.PENDING),  # resting at the LP: may wait for days
        _open(),  # a position, nothing asked of the LP
        _open(sl=Leg(LegState.ACTIVE, Decimal("1.08"), "o1-sl-1")),
        market_order(status=S.REJECTED),
        market_order(status=S.CANCELLED),
        _open(status=S.CLOSED),
    ],
    ids=["pending", "open", "open_active_leg", "rejected", "cancelled", "closed"],
)
def test_waiting_on_nothing_is_never_stuck(order: Order) -> None:
    assert in_flight(order) == ()
    assert not is_stuck(order, NOW + timedelta(days=30), AFTER_S)


def test_a_closed_position_waits_for_its_counterpart_cancel() -> None:
    """The SL fired; the close worker asked the LP to cancel the TP, which may still be live."""
    closed = _open(
        status=S.CLOSED,
        sl=Leg(LegState.TRIGGERED, Decimal("1.08"), "o1-sl-1"),
        tp=Leg(LegState.CANCEL_REQUESTED, Decimal("1.09"), "o1-tp-1", "o1-tp-1-cancel"),
    )
    assert in_flight(closed) == (InFlight(K.CANCEL_TP, "o1-tp-1-cancel", LegKind.TP),)
    assert is_stuck(closed, NOW + timedelta(seconds=AFTER_S), AFTER_S)
    plan = plan_resolution(closed, _note(Resolution.CANCELLED), "operator:c", NOW)
    assert isinstance(plan, Plan) and plan.worker is Worker.CANCEL
    outcome = apply(plan.worker, closed, account(), EURUSD, PRICES, plan.report, K.CANCEL_TP, NOW)
    assert isinstance(outcome, Applied) and outcome.order.tp.state is LegState.CANCELLED
    assert outcome.account == account()


def test_stuck_from_the_threshold_on() -> None:
    order = market_order()
    assert not is_stuck(order, NOW + timedelta(seconds=AFTER_S - 1), AFTER_S)
    assert is_stuck(order, NOW + timedelta(seconds=AFTER_S), AFTER_S)


def test_change_lifecycle_id_is_the_intakes_spelling() -> None:
    assert change_lifecycle_id("3163458366000", "modify", 4) == "3163458366000-modify-v4"


def test_a_rejection_plan_routes_to_the_reject_worker_and_applies_there() -> None:
    order = market_order(reserved_margin=Decimal("542.51"))
    acc = account(
        used_margin_all=Decimal("542.51"), reservations=(Reservation("o1", Decimal("542.51")),)
    )
    plan = plan_resolution(order, _note(), operator_exec_id("x1"), NOW)
    assert isinstance(plan, Plan)
    assert plan.worker is Worker.REJECT and plan.request.kind is K.OPEN
    report = plan.report
    assert (report.exec_id, report.ord_status, report.provider) == (
        "operator:x1", ReportStatus.REJECTED, OPERATOR_PROVIDER,
    )  # fmt: skip
    assert (report.lifecycle_id, report.symbol, report.side) == ("o1-open", "EURUSD", Side.BUY)
    assert report.reason == "LP: never received" and report.avg_px is None
    outcome = apply(plan.worker, order, acc, EURUSD, PRICES, report, K.OPEN, NOW)
    assert isinstance(outcome, Applied)
    assert outcome.order.status is S.REJECTED and outcome.account.used_margin_all == 0


def test_a_fill_plan_carries_the_quantity_and_the_side_the_request_must_produce() -> None:
    opening = plan_resolution(
        market_order(), _note(Resolution.FILLED), "operator:x", NOW, price=Decimal("1.08502")
    )
    assert isinstance(opening, Plan) and opening.worker is Worker.OPEN
    assert (opening.report.cum_qty, opening.report.avg_px) == (Decimal("0.5"), Decimal("1.08502"))
    assert opening.report.side is Side.BUY and opening.report.ord_status is ReportStatus.EXECUTED
    closing = plan_resolution(
        _open(status=S.CLOSING, close_lifecycle_id="o1-close-v2"),
        _note(Resolution.FILLED),
        "operator:y",
        NOW,
        price=Decimal("1.08500"),
    )
    assert isinstance(closing, Plan) and closing.worker is Worker.CLOSE
    assert closing.report.side is Side.SELL and closing.report.cum_qty == Decimal("0.5")


@pytest.mark.parametrize(
    ("order", "resolution", "price", "leg", "reason"),
    [
        (market_order(status=S.REJECTED), Resolution.CANCELLED, None, None, "order_final"),
        (_open(status=S.CLOSED), Resolution.FILLED, Decimal(1), None, "order_final"),
        (market_order(status=S.PENDING), Resolution.CANCELLED, None, None, "nothing_in_flight"),
        (_open(), Resolution.REJECTED, None, None, "nothing_in_flight"),
        (market_order(), Resolution.FILLED, None, None, "price_required"),
        (market_order(), Resolution.FILLED, Decimal(0), None, "price_required"),
        (market_order(), Resolution.REJECTED, Decimal(1), None, "price_not_allowed"),
        (_open(sl=Leg(LegState.REQUESTED, Decimal(1), "s")), Resolution.CANCELLED, None,
         LegKind.TP, "leg_not_in_flight"),
        (_open(sl=Leg(LegState.REQUESTED, Decimal(1), "s"), tp=Leg(LegState.REQUESTED,
         Decimal(2), "t")), Resolution.CANCELLED, None, None, "several_in_flight"),
    ],
)  # fmt: skip
def test_impossible_resolutions_are_refused(
    order: Order,
    resolution: Resolution,
    price: Decimal | None,
    leg: LegKind | None,
    reason: str,
) -> None:
    plan = plan_resolution(order, _note(resolution), "operator:z", NOW, price=price, leg=leg)
    assert isinstance(plan, Refusal) and plan.reason == reason


def test_two_waiting_legs_are_told_apart_by_leg() -> None:
    order = _open(
        sl=Leg(LegState.REQUESTED, Decimal(1), "s"), tp=Leg(LegState.REQUESTED, Decimal(2), "t")
    )
    plan = plan_resolution(order, _note(Resolution.CANCELLED), "operator:z", NOW, leg=LegKind.TP)
    assert isinstance(plan, Plan)
    assert plan.request == InFlight(K.PLACE_TP, "t", LegKind.TP) and plan.worker is Worker.CANCEL


def test_with_note_marks_every_db_event_and_its_outbox_copy() -> None:
    order = _open(sl=Leg(LegState.NONE, Decimal("1.08"), None), tp=Leg(LegState.NONE))
    queued = replace(order, status=S.QUEUED, cum_qty=Decimal(0))
    plan = plan_resolution(
        queued, _note(Resolution.FILLED), "operator:f", NOW, price=Decimal("1.08502")
    )
    assert isinstance(plan, Plan)
    outcome = apply(plan.worker, queued, account(), EURUSD, PRICES, plan.report, K.OPEN, NOW)
    assert isinstance(outcome, Applied)
    assert any(isinstance(e, LpRequest) for e in outcome.effects)  # the SL goes out too
    marked = with_note(outcome, _note(Resolution.FILLED))
    note = {"name": "alice", "reason": "LP: never received", "resolution": "filled"}
    events = [e for e in marked.effects if isinstance(e, DbEvent)]
    assert events and all(e.payload["operator"] == note for e in events)
    assert marked.order.outbox[-1].effects == marked.effects
    assert [type(e) for e in marked.effects] == [type(e) for e in outcome.effects]
    assert marked.account == outcome.account and "operator" not in events[0].payload["report"]


def test_the_cheap_first_look_never_hides_a_waiting_order() -> None:
    """``may_wait`` on stored values is False only where ``in_flight`` finds nothing."""
    for status in S:
        for sl_state in LegState:
            for tp_state in LegState:
                order = _open(
                    status=status,
                    close_lifecycle_id="c",
                    sl=Leg(sl_state, Decimal(1), "s", "sc"),
                    tp=Leg(tp_state, Decimal(2), "t", "tc"),
                )
                if in_flight(order):
                    assert may_wait(status.value, sl_state.value, tp_state.value), order
    assert not may_wait("CANCELLED", "CANCEL_REQUESTED", "NONE")
    assert may_wait("CLOSED", "TRIGGERED", "CANCEL_REQUESTED")
    assert not may_wait("OPEN", "ACTIVE", "NONE")
    assert not may_wait("PENDING", "NONE", "NONE")
