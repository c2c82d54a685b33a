"""Pure intake rules: validate client requests and produce the new state to write.

Each action returns ``Accepted`` (new order, new account, the provider request, the
lifecycle record to register *before* sending, the DB event) or ``Refused(reason)``.
Ids and time are parameters; the pipeline's intake only loads, calls, writes, sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from execflow.domain import money
from execflow.domain.accounting import reserve
from execflow.domain.codec import lifecycle_to_dict, request_to_dict
from execflow.domain.effects import Calculation, CalculationName, DbEvent, EventKind, event_id
from execflow.domain.enums import (
    LegKind,
    LegState,
    LpOrderType,
    OrderStatus,
    OrderType,
    RequestKind,
    Side,
)
from execflow.domain.frozen import replace
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import (
    Account,
    InstrumentConfig,
    Leg,
    LifecycleRecord,
    Order,
    Prices,
    lifecycle_of,
)
from execflow.domain.statemachine import check_order_edge
from execflow.domain.transitions._common import cancel_leg, event_payload, move, place_leg, strs

__all__ = [
    "Accepted",
    "IntakeDecision",
    "NewOrder",
    "Refused",
    "cancel_pending",
    "cancel_protection",
    "margin_to_reserve",
    "modify_pending",
    "request_close",
    "set_protection",
    "submit_order",
    "validate_order",
]

_STOPS = (OrderType.BUY_STOP, OrderType.SELL_STOP)


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A client's request for a new order; ``price`` is required for pending types."""

    account_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """Write ``order`` and ``account``, register ``lifecycle``, then send ``request``."""

    order: Order
    account: Account
    request: ProviderRequest
    lifecycle: LifecycleRecord
    events: tuple[DbEvent, ...]
    calculations: tuple[Calculation, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused locally, nothing sent; ``reason`` is a stable snake_case code."""

    reason: str
    detail: str = ""


IntakeDecision = Accepted | Refused


def _market(instrument: InstrumentConfig, prices: Prices) -> tuple[Decimal, Decimal] | None:
    """The client's (bid, ask): the LP quote widened by the half spread."""
    quote = prices.get(instrument.symbol)
    if quote is None:
        return None
    hs = instrument.half_spread
    return quote.bid - hs, quote.ask + hs


def _no_market(prices: Prices, symbol: str) -> Refused:
    """No usable quote: stale (known but too old) or none at all."""
    if symbol in prices.stale:
        return Refused("stale_price", symbol)
    return Refused("no_market_price", symbol)


def _no_rate(prices: Prices, currency: str) -> Refused:
    """No usable conversion rate: stale (known but too old) or none at all."""
    if {currency + money.USD, money.USD + currency} & prices.stale:
        return Refused("stale_price", currency)
    return Refused("missing_conversion_rate", currency)


def validate_order(
    new: NewOrder, instrument: InstrumentConfig | None, prices: Prices
) -> Refused | None:
    """Refusal reason for an invalid new order, or None when it may proceed."""
    if instrument is None or instrument.symbol != new.symbol:
        return Refused("unknown_symbol", new.symbol)
    if (refused := _check_qty(new.qty, instrument)) is not None:
        return refused
    implied = new.order_type.side
    if implied is not None and implied is not new.side:
        return Refused("side_does_not_match_order_type")
    market = _market(instrument, prices)
    if market is None:
        return _no_market(prices, new.symbol)
    bid, ask = market
    if new.order_type.is_pending:
        if new.price is None or new.price <= 0:
            return Refused("invalid_price")
        if not _pending_side_ok(new.order_type, new.price, bid, ask):
            return Refused("price_wrong_side")
        reference = new.price
    else:
        # a market position closes at the other side of the client's quote
        reference = bid if new.side is Side.BUY else ask
    return _check_protection(new.side, new.sl, new.tp, reference)


def _check_qty(qty: Decimal, instrument: InstrumentConfig) -> Refused | None:
    if qty <= 0:
        return Refused("invalid_quantity")
    if qty < instrument.min_lots:
        return Refused("quantity_below_minimum", str(instrument.min_lots))
    if qty > instrument.max_lots:
        return Refused("quantity_above_maximum", str(instrument.max_lots))
    if instrument.lot_step > 0 and qty % instrument.lot_step != 0:
        return Refused("quantity_not_a_lot_step_multiple", str(instrument.lot_step))
    return None


def _pending_side_ok(order_type: OrderType, price: Decimal, bid: Decimal, ask: Decimal) -> bool:
    # limits wait for a better price, stops for a worse one
    return {
        OrderType.BUY_LIMIT: price < ask,
        OrderType.SELL_LIMIT: price > bid,
        OrderType.BUY_STOP: price > ask,
        OrderType.SELL_STOP: price < bid,
    }[order_type]


def _check_protection(
    side: Side, sl: Decimal | None, tp: Decimal | None, reference: Decimal
) -> Refused | None:
    """SL below and TP above the reference for BUY; the other way round for SELL."""
    if sl is not None and (sl <= 0 or (sl >= reference if side is Side.BUY else sl <= reference)):
        return Refused("sl_wrong_side")
    if tp is not None and (tp <= 0 or (tp <= reference if side is Side.BUY else tp >= reference)):
        return Refused("tp_wrong_side")
    return None


def margin_to_reserve(
    new: NewOrder, instrument: InstrumentConfig, prices: Prices, leverage: Decimal
) -> tuple[Decimal, money.Conversion, Decimal]:
    """(booked USD margin, conversion used, price used); raises ``MissingRate``."""
    market = _market(instrument, prices)
    if new.order_type.is_pending and new.price is not None:
        price = new.price
    elif market is not None:
        price = market[1] if new.side is Side.BUY else market[0]
    else:
        raise money.MissingRate(new.symbol)
    per_lot = money.margin_per_lot(instrument, price, leverage)
    converted = money.to_usd(per_lot, instrument.profit_currency, prices, money.Direction.OWED)
    return money.book(converted.usd * new.qty), converted, price


def submit_order(
    new: NewOrder,
    account: Account,
    instrument: InstrumentConfig | None,
    prices: Prices,
    order_id: str,
    lifecycle_id: str,
    now: datetime,
) -> IntakeDecision:
    """Validate, reserve margin, and build the QUEUED / PENDING_QUEUED order and request."""
    if new.account_id != account.account_id:
        return Refused("wrong_account")
    refused = validate_order(new, instrument, prices)
    if refused is not None or instrument is None:
        return refused or Refused("unknown_symbol")
    try:
        amount, converted, price = margin_to_reserve(new, instrument, prices, account.leverage)
    except money.MissingRate as exc:
        return _no_rate(prices, exc.currency)
    if account.free_margin < amount:
        return Refused("insufficient_margin", f"free={account.free_margin} needed={amount}")
    pending = new.order_type.is_pending
    status = OrderStatus.PENDING_QUEUED if pending else OrderStatus.QUEUED
    check_order_edge(None, status, "intake")
    order = Order(
        order_id=order_id,
        account_id=account.account_id,
        group=account.group,
        symbol=new.symbol,
        side=new.side,
        order_type=new.order_type,
        qty=new.qty,
        status=status,
        lifecycle_id=lifecycle_id,
        created_at=now,
        updated_at=now,
        requested_price=new.price,
        reserved_margin=amount,
        sl=Leg(price=new.sl),
        tp=Leg(price=new.tp),
    )
    lp_level = None
    if pending and new.price is not None:
        lp_level = money.lp_price(new.side, new.price, instrument.half_spread)
    request = ProviderRequest(
        lifecycle_id=lifecycle_id,
        kind=RequestKind.PLACE_PENDING if pending else RequestKind.OPEN,
        account_id=account.account_id,
        order_id=order_id,
        symbol=new.symbol,
        side=new.side,
        order_type=_lp_type(new.order_type),
        qty=new.qty,
        price=lp_level if new.order_type not in _STOPS else None,
        stop_px=lp_level if new.order_type in _STOPS else None,
        group=account.group,
    )
    new_account = reserve(account, order_id, amount)
    calc = Calculation(
        name=CalculationName.MARGIN_RESERVE,
        order_id=order_id,
        account_id=account.account_id,
        symbol=new.symbol,
        exec_id="",
        inputs=strs(
            lots=new.qty,
            price=price,
            leverage=account.leverage,
            contract_size=instrument.contract_size,
            conversion_pair=converted.pair,
            conversion_rate=converted.rate,
            free_margin_before=account.free_margin,
        ),
        outputs=strs(reserved_margin=amount, used_margin_all_after=new_account.used_margin_all),
    )
    event = EventKind.PENDING_SUBMITTED if pending else EventKind.ORDER_SUBMITTED
    return _accept(order, order, account, new_account, request, event, now, (calc,), fresh=True)


def _lp_type(order_type: OrderType) -> LpOrderType:
    if order_type is OrderType.MARKET:
        return LpOrderType.MARKET
    return LpOrderType.STOP if order_type in _STOPS else LpOrderType.LIMIT


def request_close(
    order: Order, account: Account, lifecycle_id: str, now: datetime
) -> IntakeDecision:
    """OPEN -> CLOSING and the CLOSE request (market, opposite side, whole position)."""
    if order.status is not OrderStatus.OPEN or order.close_cum_qty > 0:
        return Refused("not_open", order.status.value)
    closing = replace(move(order, OrderStatus.CLOSING, "intake"), close_lifecycle_id=lifecycle_id)
    request = ProviderRequest(
        lifecycle_id=lifecycle_id,
        kind=RequestKind.CLOSE,
        account_id=order.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side.opposite,
        order_type=LpOrderType.MARKET,
        qty=order.cum_qty,
        orig_lifecycle_id=order.lifecycle_id,
        group=order.group,
    )
    return _accept(order, closing, account, account, request, EventKind.CLOSE_REQUESTED, now)


def modify_pending(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    new_price: Decimal,
    lifecycle_id: str,
    now: datetime,
) -> IntakeDecision:
    """PENDING -> MODIFYING with the new price checked against the market.

    The reservation is kept as it is; the position's margin is booked at its fill.
    """
    if order.status is not OrderStatus.PENDING:
        return Refused("not_pending", order.status.value)
    market = _market(instrument, prices)
    if market is None:
        return _no_market(prices, order.symbol)
    if new_price <= 0 or not _pending_side_ok(order.order_type, new_price, *market):
        return Refused("price_wrong_side")
    refused = _check_protection(order.side, order.sl.price, order.tp.price, new_price)
    if refused is not None:
        return refused
    modifying = replace(move(order, OrderStatus.MODIFYING, "intake"), new_price=new_price)
    level = money.lp_price(order.side, new_price, instrument.half_spread)
    stop = order.order_type in _STOPS
    request = ProviderRequest(
        lifecycle_id=lifecycle_id,
        kind=RequestKind.MODIFY_PENDING,
        account_id=order.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=_lp_type(order.order_type),
        qty=order.qty,
        orig_lifecycle_id=order.lifecycle_id,
        price=None if stop else level,
        stop_px=level if stop else None,
        group=order.group,
    )
    return _accept(order, modifying, account, account, request, EventKind.MODIFY_REQUESTED, now)


def cancel_pending(
    order: Order, account: Account, lifecycle_id: str, now: datetime
) -> IntakeDecision:
    """PENDING -> CANCELLING and the CANCEL_PENDING request."""
    if order.status is not OrderStatus.PENDING:
        return Refused("not_pending", order.status.value)
    request = ProviderRequest(
        lifecycle_id=lifecycle_id,
        kind=RequestKind.CANCEL_PENDING,
        account_id=order.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        order_type=_lp_type(order.order_type),
        qty=order.qty,
        orig_lifecycle_id=order.lifecycle_id,
        group=order.group,
    )
    cancelling = move(order, OrderStatus.CANCELLING, "intake")
    return _accept(order, cancelling, account, account, request, EventKind.CANCEL_REQUESTED, now)


def set_protection(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    leg: LegKind,
    price: Decimal,
    lifecycle_id: str,
    now: datetime,
) -> IntakeDecision:
    """Place an SL or TP on an open position (the leg must not be live already)."""
    if order.status is not OrderStatus.OPEN:
        return Refused("not_open", order.status.value)
    if order.leg(leg).state not in (LegState.NONE, LegState.CANCELLED, LegState.REJECTED):
        return Refused("leg_live", order.leg(leg).state.value)
    market = _market(instrument, prices)
    if market is None:
        return _no_market(prices, order.symbol)
    reference = market[0] if order.side is Side.BUY else market[1]
    sl, tp = (price, None) if leg is LegKind.SL else (None, price)
    refused = _check_protection(order.side, sl, tp, reference)
    if refused is not None:
        return refused
    updated, effect = place_leg(order, leg, price, instrument, "intake", lifecycle_id)
    return _accept(order, updated, account, account, effect.request, EventKind.LEG_REQUESTED, now)


def cancel_protection(
    order: Order, account: Account, leg: LegKind, lifecycle_id: str, now: datetime
) -> IntakeDecision:
    """Cancel a live SL or TP leg of an open position."""
    if order.status is not OrderStatus.OPEN:
        return Refused("not_open", order.status.value)
    if order.leg(leg).state not in (LegState.REQUESTED, LegState.ACTIVE):
        return Refused("leg_not_live", order.leg(leg).state.value)
    updated, effect = cancel_leg(order, leg, "intake", lifecycle_id)
    return _accept(
        order, updated, account, account, effect.request, EventKind.LEG_CANCEL_REQUESTED, now
    )


def _accept(
    before: Order,
    order: Order,
    account_before: Account,
    account: Account,
    request: ProviderRequest,
    kind: EventKind,
    now: datetime,
    calculations: tuple[Calculation, ...] = (),
    *,
    fresh: bool = False,
) -> Accepted:
    new_order = order if fresh else replace(order, updated_at=now, version=before.version + 1)
    if account != account_before:
        account = replace(account, version=account_before.version + 1)
    lifecycle = lifecycle_of(request)
    payload = event_payload(new_order, account_before, account, None)
    payload["request"] = request_to_dict(request)
    payload["lifecycle"] = lifecycle_to_dict(lifecycle)
    event = DbEvent(
        event_id=event_id(order.order_id, request.lifecycle_id, kind),
        kind=kind,
        account_id=order.account_id,
        order_id=order.order_id,
        exec_id="",
        payload=payload,
    )
    return Accepted(new_order, account, request, lifecycle, (event,), calculations)
