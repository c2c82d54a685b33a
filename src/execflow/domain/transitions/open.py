"""Worker ``open``: fills that open a position (market orders, triggered pending orders)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from execflow.domain import money
from execflow.domain.accounting import add_position, reservation_of
from execflow.domain.effects import Calculation, CalculationName, Effect, EventKind
from execflow.domain.enums import LegKind, LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import (
    ZERO,
    Account,
    CommissionSnapshot,
    InstrumentConfig,
    Order,
    Position,
    Prices,
)
from execflow.domain.outcomes import (
    MISSING_CONVERSION_RATE,
    Invalid,
    NeedsReview,
    Outcome,
    Stale,
    TooEarly,
)
from execflow.domain.transitions._common import (
    commit,
    duplicate,
    fill_progress,
    move,
    overfill,
    place_leg,
    strs,
)

__all__ = ["apply_open"]

_OPENS_FROM = {
    RequestKind.OPEN: frozenset({OrderStatus.QUEUED}),
    RequestKind.PLACE_PENDING: frozenset(
        {
            OrderStatus.PENDING_QUEUED,
            OrderStatus.PENDING,
            OrderStatus.MODIFYING,
            OrderStatus.CANCELLING,
        }
    ),
}
_OPENS_FROM[RequestKind.MODIFY_PENDING] = _OPENS_FROM[RequestKind.PLACE_PENDING]
_OPENS_FROM[RequestKind.CANCEL_PENDING] = _OPENS_FROM[RequestKind.PLACE_PENDING]
_ALREADY_OPEN = frozenset({OrderStatus.OPEN, OrderStatus.CLOSING, OrderStatus.CLOSED})
_DEAD = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED})


# C901: guard clauses in the order the rules are stated; one flat list reads like the spec
def apply_open(  # noqa: C901
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """Apply an opening fill: progress on partial fills, the position on the final one."""
    if (dup := duplicate(order, report)) is not None:
        return dup
    if kind not in _OPENS_FROM or not report.ord_status.is_fill:
        return Invalid("not_an_opening_fill")
    if report.cum_qty is None and not report.is_trade:
        return Stale("not_a_new_fill")  # a LastQty-only status report: counted already
    progress = fill_progress(order.cum_qty, order.avg_px, report)
    if progress is None:
        return Invalid("fill_progress_underivable")
    cum, avg = progress
    if cum > order.qty:
        return overfill(cum, order.qty, report)
    if order.status in _DEAD:
        return NeedsReview("fill_on_final_order")
    if order.status in _ALREADY_OPEN:
        return Stale("already_open")
    if order.status not in _OPENS_FROM[kind]:
        return Invalid("status_does_not_match_request_kind")
    if cum <= order.cum_qty:
        return Stale("fill_not_newer")
    if cum < order.qty:
        if report.ord_status is ReportStatus.EXECUTED:
            if report.cum_qty is None:
                # LastQty-only: the final fill overtook partials not yet applied
                return TooEarly("earlier_partial_fills_missing")
            return NeedsReview("executed_below_order_quantity")
        partial = replace(
            order, cum_qty=cum, avg_px=avg, lp_order_id=report.lp_order_id or order.lp_order_id
        )
        return commit(
            before=order,
            order=partial,
            account_before=account,
            account=account,
            report=report,
            event=EventKind.ORDER_PARTIALLY_FILLED,
            now=now,
        )
    try:
        return _open_position(order, account, instrument, prices, report, avg, now)
    except money.MissingRate:
        return TooEarly(MISSING_CONVERSION_RATE)


def _open_position(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    avg: Decimal,
    now: datetime,
) -> Outcome:
    hs = instrument.half_spread
    lots = order.qty
    open_px = money.open_price(order.side, avg, hs)
    per_lot = money.margin_per_lot(instrument, open_px, account.leverage)
    per_lot_usd = money.to_usd(per_lot, instrument.profit_currency, prices, money.Direction.OWED)
    margin = money.book(per_lot_usd.usd * lots)
    snapshot = CommissionSnapshot(
        rate=instrument.commission_rate,
        commission_type=instrument.commission_type,
        value_type=instrument.commission_value_type,
        contract_size=instrument.contract_size,
    )
    entry = ZERO
    commission_rate = Decimal(1)
    if money.charges_entry(snapshot.commission_type):
        amount, currency = money.commission(snapshot, lots, open_px, instrument.profit_currency)
        converted = money.to_usd(amount, currency, prices, money.Direction.OWED)
        entry, commission_rate = money.book(converted.usd), converted.rate
    new_account = add_position(
        account, Position(order.order_id, order.symbol, order.side, lots, per_lot_usd.usd)
    )
    opened = replace(
        move(order, OrderStatus.OPEN, "open"),
        cum_qty=lots,
        avg_px=avg,
        open_price=open_px,
        opened_at=report.transact_time or now,
        reserved_margin=ZERO,
        margin=margin,
        commission=snapshot,
        entry_commission=entry,
        new_price=None,
        lp_order_id=report.lp_order_id or order.lp_order_id,
    )
    follow_ups: list[Effect] = []
    for leg_kind in (LegKind.SL, LegKind.TP):
        leg = opened.leg(leg_kind)
        if leg.state is LegState.NONE and leg.price is not None:
            opened, request = place_leg(opened, leg_kind, leg.price, instrument, "open")
            follow_ups.append(request)
    calc = Calculation(
        name=CalculationName.ORDER_OPEN_CALC,
        order_id=order.order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        exec_id=report.exec_id,
        inputs=strs(
            side=order.side.value,
            lots=lots,
            avg_px=avg,
            half_spread=hs,
            contract_size=instrument.contract_size,
            leverage=account.leverage,
            instrument_type=instrument.instrument_type.value,
            crypto_margin_factor=instrument.crypto_margin_factor,
            profit_currency=instrument.profit_currency,
            conversion_pair=per_lot_usd.pair,
            conversion_rate=per_lot_usd.rate,
            conversion_operation=per_lot_usd.operation,
            commission_rate=snapshot.rate,
            commission_type=snapshot.commission_type.value,
            commission_value_type=snapshot.value_type.value,
            commission_conversion_rate=commission_rate,
            reserved_margin_released=reservation_of(account, order.order_id),
        ),
        outputs=strs(
            open_price=open_px,
            margin_per_lot=per_lot,
            margin_per_lot_usd=per_lot_usd.usd,
            margin_usd=margin,
            entry_commission=entry,
            used_margin_executed_before=account.used_margin_executed,
            used_margin_executed_after=new_account.used_margin_executed,
            used_margin_all_before=account.used_margin_all,
            used_margin_all_after=new_account.used_margin_all,
        ),
    )
    return commit(
        before=order,
        order=opened,
        account_before=account,
        account=new_account,
        report=report,
        event=EventKind.ORDER_OPENED,
        now=now,
        follow_ups=tuple(follow_ups),
        calculations=(calc,),
    )
