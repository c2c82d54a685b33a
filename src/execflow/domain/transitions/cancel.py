"""Worker ``cancel``: cancel confirmations of pending orders, SL legs and TP legs."""

from __future__ import annotations

from datetime import datetime

from execflow.domain.accounting import release, reservation_of
from execflow.domain.effects import Calculation, CalculationName, EventKind
from execflow.domain.enums import LegState, OrderStatus, ReportStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import ZERO, Account, InstrumentConfig, Order, Prices
from execflow.domain.outcomes import Invalid, NeedsReview, Outcome, Stale, TooEarly
from execflow.domain.transitions._common import commit, duplicate, move, move_leg, strs

__all__ = ["apply_cancel", "margin_release"]

_PENDING_KINDS = frozenset(
    {RequestKind.PLACE_PENDING, RequestKind.MODIFY_PENDING, RequestKind.CANCEL_PENDING}
)
_CANCELLABLE = frozenset(
    {
        OrderStatus.PENDING_QUEUED,
        OrderStatus.PENDING,
        OrderStatus.MODIFYING,
        OrderStatus.CANCELLING,
    }
)
_POSITION = frozenset({OrderStatus.OPEN, OrderStatus.CLOSING, OrderStatus.CLOSED})
_LEG_CANCELLABLE = frozenset({LegState.REQUESTED, LegState.ACTIVE, LegState.CANCEL_REQUESTED})


def apply_cancel(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """Pending order -> CANCELLED (reservation released); SL/TP leg -> CANCELLED."""
    if (dup := duplicate(order, report)) is not None:
        return dup
    if report.ord_status is not ReportStatus.CANCELLED:
        return Invalid("not_a_cancel_confirmation")
    if kind in _PENDING_KINDS:
        return _cancel_pending(order, account, report, now)
    if kind.leg is not None:
        return _cancel_leg(order, account, report, kind, now)
    return Invalid("kind_not_cancellable")


def _cancel_pending(
    order: Order, account: Account, report: ExecutionReport, now: datetime
) -> Outcome:
    if order.status in _POSITION or order.status.is_final:
        return Stale("order_moved_on")
    if order.status not in _CANCELLABLE:
        return Invalid("not_a_pending_order")
    if order.cum_qty > 0:
        return NeedsReview("partially_filled_then_cancelled")
    new_account = release(account, order.order_id)
    cancelled = replace(
        move(order, OrderStatus.CANCELLED, "cancel"),
        reserved_margin=ZERO,
        new_price=None,
        reason=report.reason,
    )
    return commit(
        before=order,
        order=cancelled,
        account_before=account,
        account=new_account,
        report=report,
        event=EventKind.PENDING_CANCELLED,
        now=now,
        calculations=(margin_release(order, account, new_account, report),),
    )


def _cancel_leg(
    order: Order, account: Account, report: ExecutionReport, kind: RequestKind, now: datetime
) -> Outcome:
    leg_kind = kind.leg
    if leg_kind is None:
        return Invalid("kind_not_cancellable")
    if order.status not in _POSITION:
        return TooEarly("position_not_open")
    leg = order.leg(leg_kind)
    placing = kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP)
    own_id = leg.lifecycle_id if placing else leg.cancel_lifecycle_id
    if own_id != report.lifecycle_id:
        # a confirmation for an earlier placement of this leg
        return Stale("other_leg_lifecycle")
    if leg.state not in _LEG_CANCELLABLE:
        return Stale("leg_settled")
    # a closed order still gets its leg housekeeping: no money moves here
    cleared = replace(leg, state=LegState.CANCELLED, price=None, reason=report.reason)
    return commit(
        before=order,
        order=move_leg(order, leg_kind, cleared, "cancel"),
        account_before=account,
        account=account,
        report=report,
        event=EventKind.LEG_CANCELLED,
        now=now,
    )


def margin_release(
    order: Order, before: Account, after: Account, report: ExecutionReport
) -> Calculation:
    """The MARGIN_RELEASE calculation record of a released reservation."""
    return Calculation(
        name=CalculationName.MARGIN_RELEASE,
        order_id=order.order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        exec_id=report.exec_id,
        inputs=strs(reserved_margin=reservation_of(before, order.order_id)),
        outputs=strs(
            used_margin_all_before=before.used_margin_all,
            used_margin_all_after=after.used_margin_all,
            free_margin_after=after.free_margin,
        ),
    )
