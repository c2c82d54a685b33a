"""Workers ``stoploss`` and ``takeprofit``: LP acceptance / modification of SL and TP legs."""

from __future__ import annotations

from datetime import datetime

from execflow.domain.effects import EventKind
from execflow.domain.enums import LegKind, LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.domain.money import client_price
from execflow.domain.outcomes import Invalid, Outcome, Stale, TooEarly
from execflow.domain.transitions._common import commit, duplicate, move_leg

__all__ = ["apply_stoploss", "apply_takeprofit"]

_PLACE = {LegKind.SL: RequestKind.PLACE_SL, LegKind.TP: RequestKind.PLACE_TP}


def apply_stoploss(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """SL leg REQUESTED -> ACTIVE (or ACTIVE re-priced) at the client's level."""
    return _apply_leg(LegKind.SL, order, account, instrument, report, kind, now)


def apply_takeprofit(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """TP leg REQUESTED -> ACTIVE (or ACTIVE re-priced) at the client's level."""
    return _apply_leg(LegKind.TP, order, account, instrument, report, kind, now)


def _apply_leg(
    leg_kind: LegKind,
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    if (dup := duplicate(order, report)) is not None:
        return dup
    if kind is not _PLACE[leg_kind] or report.ord_status not in (
        ReportStatus.PENDING,
        ReportStatus.MODIFY,
    ):
        return Invalid("not_a_leg_update")
    if order.status.is_final:
        return Stale("order_final")
    if order.status not in (OrderStatus.OPEN, OrderStatus.CLOSING):
        return TooEarly("position_not_open")
    leg = order.leg(leg_kind)
    if leg.lifecycle_id != report.lifecycle_id:
        return Stale("other_leg_lifecycle")
    level = report.level
    # the leg closes the position: the inverse of the shift applied when it was sent
    price = (
        leg.price
        if level is None
        else client_price(order.side.opposite, level, instrument.half_spread)
    )
    if leg.state is LegState.REQUESTED:
        new_leg = replace(leg, state=LegState.ACTIVE, price=price)
    elif leg.state is LegState.ACTIVE and report.ord_status is ReportStatus.MODIFY:
        if price == leg.price:
            return Stale("price_unchanged")
        new_leg = replace(leg, price=price)
    else:
        return Stale("leg_moved_on")
    return commit(
        before=order,
        order=move_leg(order, leg_kind, new_leg, "stoploss/takeprofit"),
        account_before=account,
        account=account,
        report=report,
        event=EventKind.LEG_ACTIVE,
        now=now,
    )
