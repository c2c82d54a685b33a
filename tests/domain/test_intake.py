"""Intake rules: validation, margin reservation, and the state each action produces."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from execflow.domain.enums import (
    LegKind,
    LegState,
    LpOrderType,
    OrderStatus,
    OrderType,
    RequestKind,
    Side,
)
from execflow.domain.intake import (
    Accepted,
    NewOrder,
    Refused,
    cancel_pending,
    cancel_protection,
    modify_pending,
    request_close,
    set_protection,
    submit_order,
)
from execflow.domain.models import Leg, Prices
from tests.domain.factories import EURUSD, NOW, PRICES, account, market_order

D = Decimal


def _submit(new: NewOrder, **kw: object) -> Accepted | Refused:
    acct = kw.get("acct", account())
    return submit_order(new, acct, kw.get("instrument", EURUSD), kw.get("prices", PRICES),  # type: ignore[arg-type]
                        "o1", "L1", NOW)  # fmt: skip


def _new(**changes: object) -> NewOrder:
    base = NewOrder("live:6", "EURUSD", Side.BUY, OrderType.MARKET, D("0.5"))
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (_new(symbol="XXXYYY"), "unknown_symbol"),
        (_new(qty=D(0)), "invalid_quantity"),
        (_new(qty=D("0.001")), "quantity_below_minimum"),
        (_new(qty=D(101)), "quantity_above_maximum"),
        (_new(qty=D("0.015")), "quantity_not_a_lot_step_multiple"),
        (_new(order_type=OrderType.SELL_LIMIT), "side_does_not_match_order_type"),
        (_new(order_type=OrderType.BUY_LIMIT), "invalid_price"),
        (_new(order_type=OrderType.BUY_LIMIT, price=D("1.09")), "price_wrong_side"),
        (_new(order_type=OrderType.BUY_STOP, price=D("1.08")), "price_wrong_side"),
        (
            _new(side=Side.SELL, order_type=OrderType.SELL_LIMIT, price=D("1.08")),
            "price_wrong_side",
        ),
        (_new(side=Side.SELL, order_type=OrderType.SELL_STOP, price=D("1.09")), "price_wrong_side"),
        (_new(sl=D("1.09")), "sl_wrong_side"),
        (_new(tp=D("1.08")), "tp_wrong_side"),
        (_new(side=Side.SELL, sl=D("1.08")), "sl_wrong_side"),
        (_new(qty=D(50)), "insufficient_margin"),
        (_new(account_id="live:7"), "wrong_account"),
    ],
)
def test_refusals(new: NewOrder, reason: str) -> None:
    result = _submit(new, instrument=EURUSD if new.symbol == "EURUSD" else None)
    assert isinstance(result, Refused)
    assert result.reason == reason


def test_refusals_for_missing_prices() -> None:
    assert _submit(_new(), prices=Prices()) == Refused("no_market_price", "EURUSD")
    gbp = replace(EURUSD, profit_currency="GBP")
    result = _submit(_new(), instrument=gbp, prices=Prices.of(PRICES.quotes["EURUSD"]))
    assert result == Refused("missing_conversion_rate", "GBP")


def test_market_order_reserves_margin_and_registers_the_lifecycle() -> None:
    result = _submit(_new(sl=D("1.08"), tp=D("1.09")))
    assert isinstance(result, Accepted)
    # reserved at the client's ask 1.08503: 542.515 -> 542.52
    assert result.order.reserved_margin == D("542.52")
    assert result.account.used_margin_all == D("542.52")
    assert result.account.used_margin_executed == 0
    assert result.order.status is OrderStatus.QUEUED
    assert result.order.sl == Leg(price=D("1.08"))
    assert (result.lifecycle.lifecycle_id, result.lifecycle.kind) == ("L1", RequestKind.OPEN)
    assert result.request.order_type is LpOrderType.MARKET
    assert result.events[0].event_id == "o1:L1:ORDER_SUBMITTED"


def test_pending_order_is_sent_at_the_lp_level() -> None:
    result = _submit(_new(order_type=OrderType.BUY_STOP, price=D("1.09")))
    assert isinstance(result, Accepted)
    assert result.order.status is OrderStatus.PENDING_QUEUED
    assert (result.request.kind, result.request.order_type) == (
        RequestKind.PLACE_PENDING,
        LpOrderType.STOP,
    )
    assert result.request.stop_px == D("1.08999")  # client buys hs above the LP


def test_pending_actions() -> None:
    pending = market_order(order_type=OrderType.BUY_LIMIT, status=OrderStatus.PENDING,
                           requested_price=D("1.08"))  # fmt: skip
    modified = modify_pending(pending, account(), EURUSD, PRICES, D("1.07"), "M1", NOW)
    assert isinstance(modified, Accepted)
    assert (modified.order.status, modified.order.new_price) == (OrderStatus.MODIFYING, D("1.07"))
    assert modified.request.price == D("1.06999")
    assert modify_pending(pending, account(), EURUSD, PRICES, D("1.2"), "M1", NOW) == Refused(
        "price_wrong_side"
    )
    cancelled = cancel_pending(pending, account(), "C1", NOW)
    assert isinstance(cancelled, Accepted)
    assert cancelled.order.status is OrderStatus.CANCELLING
    assert cancelled.request.orig_lifecycle_id == pending.lifecycle_id
    assert isinstance(cancel_pending(market_order(), account(), "C1", NOW), Refused)


def test_position_actions() -> None:
    position = market_order(status=OrderStatus.OPEN, cum_qty=D("0.5"), open_price=D("1.08501"))
    closing = request_close(position, account(), "X1", NOW)
    assert isinstance(closing, Accepted)
    assert (closing.order.status, closing.request.side) == (OrderStatus.CLOSING, Side.SELL)
    assert isinstance(request_close(closing.order, account(), "X2", NOW), Refused)
    placed = set_protection(position, account(), EURUSD, PRICES, LegKind.SL, D("1.08"), "S1", NOW)
    assert isinstance(placed, Accepted)
    assert placed.order.sl.state is LegState.REQUESTED
    assert placed.request.stop_px == D("1.08001")
    again = set_protection(
        placed.order, account(), EURUSD, PRICES, LegKind.SL, D("1.08"), "S2", NOW
    )
    assert again == Refused("leg_live", "REQUESTED")
    wrong = set_protection(position, account(), EURUSD, PRICES, LegKind.TP, D("1.08"), "T1", NOW)
    assert wrong == Refused("tp_wrong_side")
    cancelled = cancel_protection(placed.order, account(), LegKind.SL, "S1C", NOW)
    assert isinstance(cancelled, Accepted)
    assert cancelled.order.sl.state is LegState.CANCEL_REQUESTED
    assert cancelled.request.orig_lifecycle_id == "S1"
    assert isinstance(cancel_protection(position, account(), LegKind.TP, "T1C", NOW), Refused)
