"""Worker ``close``: fills that close a position (manual close, SL or TP triggered)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from execflow.domain import money
from execflow.domain.accounting import close_position
from execflow.domain.effects import Calculation, CalculationName, Effect, EventKind
from execflow.domain.enums import (
    CloseReason,
    LegKind,
    LegState,
    OrderStatus,
    ReportStatus,
    RequestKind,
)
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import (
    ZERO,
    Account,
    CommissionSnapshot,
    InstrumentConfig,
    Order,
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
    cancel_leg,
    commit,
    duplicate,
    fill_progress,
    move,
    move_leg,
    overfill,
    strs,
)

__all__ = ["apply_close"]

_REASONS = {
    RequestKind.CLOSE: CloseReason.CLOSE,
    RequestKind.PLACE_SL: CloseReason.STOPLOSS,
    RequestKind.CANCEL_SL: CloseReason.STOPLOSS,
    RequestKind.PLACE_TP: CloseReason.TAKEPROFIT,
    RequestKind.CANCEL_TP: CloseReason.TAKEPROFIT,
}
_LIVE_LEG = frozenset({LegState.REQUESTED, LegState.ACTIVE})
_FIRING_LEG = frozenset({LegState.REQUESTED, LegState.ACTIVE, LegState.CANCEL_REQUESTED})


# C901: guard clauses in the order the rules are stated; one flat list reads like the spec
def apply_close(  # noqa: C901
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """Apply a closing fill: progress on partial fills, profit and balance on the final one."""
    if (dup := duplicate(order, report)) is not None:
        return dup
    reason = _REASONS.get(kind)
    if reason is None or not report.ord_status.is_fill:
        return Invalid("not_a_closing_fill")
    if order.status is OrderStatus.CLOSED:
        if order.close_lifecycle_id == report.lifecycle_id:
            return Stale("already_closed")
        if {order.close_reason, reason} == {CloseReason.STOPLOSS, CloseReason.TAKEPROFIT}:
            return NeedsReview("both_legs_filled")
        return NeedsReview("closed_twice")
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        return NeedsReview("fill_on_final_order")
    if order.status not in (OrderStatus.OPEN, OrderStatus.CLOSING):
        return TooEarly("position_not_open")
    if kind is RequestKind.CLOSE:
        if order.close_lifecycle_id != report.lifecycle_id:
            return NeedsReview("close_fill_without_close_request")
    else:
        leg_kind = kind.leg or LegKind.SL  # every non-CLOSE kind in _REASONS has a leg
        leg = order.leg(leg_kind)
        own_id = (
            leg.lifecycle_id
            if kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP)
            else (leg.cancel_lifecycle_id)
        )
        if own_id != report.lifecycle_id or leg.state not in _FIRING_LEG:
            return NeedsReview("leg_fill_for_inactive_leg")
    same_close = order.close_lifecycle_id == report.lifecycle_id
    if order.close_cum_qty > 0 and not same_close:
        return NeedsReview("concurrent_closes")
    prev_cum = order.close_cum_qty if same_close else ZERO
    prev_avg = order.close_avg_px if same_close else None
    if report.cum_qty is None and not report.is_trade:
        return Stale("not_a_new_fill")  # a LastQty-only status report: counted already
    progress = fill_progress(prev_cum, prev_avg, report)
    if progress is None:
        return Invalid("fill_progress_underivable")
    cum, avg = progress
    if cum > order.cum_qty:
        return overfill(cum, order.cum_qty, report)
    if cum <= prev_cum:
        return Stale("fill_not_newer")
    if cum < order.cum_qty:
        if report.ord_status is ReportStatus.EXECUTED:
            if report.cum_qty is None:
                # LastQty-only: the final fill overtook partials not yet applied
                return TooEarly("earlier_partial_fills_missing")
            return NeedsReview("executed_below_position_quantity")
        partial = replace(
            order, close_lifecycle_id=report.lifecycle_id, close_cum_qty=cum, close_avg_px=avg
        )
        return commit(
            before=order,
            order=partial,
            account_before=account,
            account=account,
            report=report,
            event=EventKind.ORDER_PARTIALLY_CLOSED,
            now=now,
        )
    try:
        return _close_position(order, account, instrument, prices, report, kind, reason, avg, now)
    except money.MissingRate:
        return TooEarly(MISSING_CONVERSION_RATE)


def _close_position(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    reason: CloseReason,
    avg: Decimal,
    now: datetime,
) -> Outcome:
    if order.open_price is None:
        return Invalid("open_position_without_open_price")
    snapshot = order.commission or CommissionSnapshot(
        instrument.commission_rate,
        instrument.commission_type,
        instrument.commission_value_type,
        instrument.contract_size,
    )
    hs = instrument.half_spread
    lots = order.cum_qty
    close_px = money.close_price(order.side, avg, hs)
    gross = money.profit(order.side, order.open_price, close_px, lots, snapshot.contract_size)
    converted = money.to_usd(
        gross, instrument.profit_currency, prices, money.Direction.of_amount(gross)
    )
    profit_usd = money.book(converted.usd)
    exit_commission = ZERO
    if money.charges_exit(snapshot.commission_type):
        amount, currency = money.commission(snapshot, lots, close_px, instrument.profit_currency)
        exit_commission = money.book(
            money.to_usd(amount, currency, prices, money.Direction.OWED).usd
        )
    net = money.net_profit(profit_usd, order.entry_commission, exit_commission, order.swap)
    new_account = close_position(account, order.order_id, net)
    closed = replace(
        move(order, OrderStatus.CLOSED, "close"),
        close_lifecycle_id=report.lifecycle_id,
        close_cum_qty=lots,
        close_avg_px=avg,
        close_price=close_px,
        closed_at=report.transact_time or now,
        profit=profit_usd,
        exit_commission=exit_commission,
        net_profit=net,
        close_reason=reason,
    )
    follow_ups: list[Effect] = []
    fired = kind.leg
    if fired is not None:
        closed = move_leg(
            closed, fired, replace(closed.leg(fired), state=LegState.TRIGGERED), "close"
        )
    for leg_kind in (LegKind.SL, LegKind.TP):
        # whatever still rests at the LP must go, or it could open a new position later
        if leg_kind is not fired and closed.leg(leg_kind).state in _LIVE_LEG:
            closed, request = cancel_leg(closed, leg_kind, "close")
            follow_ups.append(request)
    calc = Calculation(
        name=CalculationName.ORDER_CLOSE_CALC,
        order_id=order.order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        exec_id=report.exec_id,
        inputs=strs(
            side=order.side.value,
            lots=lots,
            avg_px=avg,
            half_spread=hs,
            open_price=order.open_price,
            contract_size=snapshot.contract_size,
            profit_currency=instrument.profit_currency,
            conversion_pair=converted.pair,
            conversion_rate=converted.rate,
            conversion_operation=converted.operation,
            entry_commission=order.entry_commission,
            commission_rate=snapshot.rate,
            commission_type=snapshot.commission_type.value,
            commission_value_type=snapshot.value_type.value,
            swap=order.swap,
            close_reason=reason.value,
            balance_before=account.balance,
        ),
        outputs=strs(
            close_price=close_px,
            profit_profit_currency=gross,
            profit_usd=profit_usd,
            exit_commission=exit_commission,
            net_profit=net,
            balance_after=new_account.balance,
            used_margin_executed_before=account.used_margin_executed,
            used_margin_executed_after=new_account.used_margin_executed,
        ),
    )
    return commit(
        before=order,
        order=closed,
        account_before=account,
        account=new_account,
        report=report,
        event=EventKind.ORDER_CLOSED,
        now=now,
        follow_ups=tuple(follow_ups),
        calculations=(calc,),
    )
