"""Worker ``reject``: undo what a rejected (or killed) request had done."""

from __future__ import annotations

from datetime import datetime

from execflow.domain.accounting import release
from execflow.domain.effects import EventKind
from execflow.domain.enums import LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import ZERO, Account, InstrumentConfig, Order, Prices
from execflow.domain.outcomes import Applied, Invalid, NeedsReview, Outcome, Stale, TooEarly
from execflow.domain.transitions._common import commit, duplicate, move, move_leg
from execflow.domain.transitions.cancel import margin_release

__all__ = ["apply_reject"]

_OPENING = {
    RequestKind.OPEN: OrderStatus.QUEUED,
    RequestKind.PLACE_PENDING: OrderStatus.PENDING_QUEUED,
}
_UNDO = {
    RequestKind.MODIFY_PENDING: OrderStatus.MODIFYING,
    RequestKind.CANCEL_PENDING: OrderStatus.CANCELLING,
    RequestKind.CLOSE: OrderStatus.CLOSING,
}
_POSITION = frozenset({OrderStatus.OPEN, OrderStatus.CLOSING, OrderStatus.CLOSED})


def apply_reject(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """Rejection (or an unfilled kill) of any request; the LP's reason is kept."""
    if (dup := duplicate(order, report)) is not None:
        return dup
    if report.ord_status not in (ReportStatus.REJECTED, ReportStatus.CANCELLED):
        return Invalid("not_a_rejection")
    if kind in _OPENING:
        return _reject_opening(order, account, report, _OPENING[kind], now)
    if kind in _UNDO:
        return _undo_request(order, account, report, kind, now)
    return _reject_leg_request(order, account, report, kind, now)


def _reject_opening(
    order: Order, account: Account, report: ExecutionReport, status: OrderStatus, now: datetime
) -> Outcome:
    if order.status in _POSITION:
        return NeedsReview("rejected_after_fill")
    if order.status is not status:
        return Stale("order_moved_on")
    if order.cum_qty > 0:
        return NeedsReview("partially_filled_then_killed")
    new_account = release(account, order.order_id)
    rejected = replace(
        move(order, OrderStatus.REJECTED, "reject"), reserved_margin=ZERO, reason=report.reason
    )
    return _commit(
        order, rejected, account, new_account, report, EventKind.ORDER_REJECTED, now,
        margin=True,
    )  # fmt: skip


def _undo_request(
    order: Order, account: Account, report: ExecutionReport, kind: RequestKind, now: datetime
) -> Outcome:
    if order.status is not _UNDO[kind]:
        return Stale("order_moved_on")
    if kind is RequestKind.CLOSE:
        if order.close_cum_qty > 0:
            return NeedsReview("close_partially_filled_then_rejected")
        restored = replace(
            move(order, OrderStatus.OPEN, "reject"), close_lifecycle_id=None, reason=report.reason
        )
    else:
        # MODIFY rejected keeps the old price; CANCEL rejected leaves the order resting
        restored = replace(
            move(order, OrderStatus.PENDING, "reject"), new_price=None, reason=report.reason
        )
    return _commit(order, restored, account, account, report, EventKind.REQUEST_REJECTED, now)


def _reject_leg_request(
    order: Order, account: Account, report: ExecutionReport, kind: RequestKind, now: datetime
) -> Outcome:
    leg_kind = kind.leg
    if leg_kind is None:
        return Invalid("kind_not_rejectable")
    if order.status not in _POSITION:
        return TooEarly("position_not_open")
    if order.status is OrderStatus.CLOSED:
        return Stale("order_final")
    leg = order.leg(leg_kind)
    if kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP):
        if leg.lifecycle_id != report.lifecycle_id or leg.state is not LegState.REQUESTED:
            return Stale("leg_moved_on")
        new_leg = replace(leg, state=LegState.REJECTED, reason=report.reason)
        event = EventKind.LEG_REJECTED
    else:
        if leg.cancel_lifecycle_id != report.lifecycle_id or (
            leg.state is not LegState.CANCEL_REQUESTED
        ):
            return Stale("leg_moved_on")
        new_leg = replace(
            leg, state=LegState.ACTIVE, cancel_lifecycle_id=None, reason=report.reason
        )
        event = EventKind.REQUEST_REJECTED
    updated = move_leg(order, leg_kind, new_leg, "reject")
    return _commit(order, updated, account, account, report, event, now)


def _commit(
    before: Order,
    order: Order,
    account_before: Account,
    account: Account,
    report: ExecutionReport,
    event: EventKind,
    now: datetime,
    *,
    margin: bool = False,
) -> Applied:
    calcs = (margin_release(before, account_before, account, report),) if margin else ()
    return commit(
        before=before,
        order=order,
        account_before=account_before,
        account=account,
        report=report,
        event=event,
        now=now,
        calculations=calcs,
    )
