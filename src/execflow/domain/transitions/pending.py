"""Worker ``pending``: LP acceptance and modification of pending (limit/stop) orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from execflow.domain.effects import EventKind
from execflow.domain.enums import OrderStatus, ReportStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Account, InstrumentConfig, Order, Prices
from execflow.domain.money import client_price
from execflow.domain.outcomes import Invalid, Outcome, Stale, TooEarly
from execflow.domain.transitions._common import commit, duplicate, move

__all__ = ["apply_pending"]

_PENDING_KINDS = frozenset({RequestKind.PLACE_PENDING, RequestKind.MODIFY_PENDING})
_NOT_YET = frozenset({OrderStatus.QUEUED, OrderStatus.PENDING_QUEUED})


def apply_pending(
    order: Order,
    account: Account,
    instrument: InstrumentConfig,
    prices: Prices,
    report: ExecutionReport,
    kind: RequestKind,
    now: datetime,
) -> Outcome:
    """PENDING_QUEUED -> PENDING on acceptance; MODIFYING -> PENDING with the new price."""
    if (dup := duplicate(order, report)) is not None:
        return dup
    if kind not in _PENDING_KINDS or report.ord_status not in (
        ReportStatus.PENDING,
        ReportStatus.MODIFY,
    ):
        return Invalid("not_a_pending_update")
    if order.status.is_final or order.status in (OrderStatus.OPEN, OrderStatus.CLOSING):
        return Stale("order_moved_on")
    if not order.order_type.is_pending:
        return Invalid("not_a_pending_order")
    level = _client_level(order, instrument, report)
    lp_order_id = report.lp_order_id or order.lp_order_id
    if kind is RequestKind.PLACE_PENDING:
        if order.status is OrderStatus.PENDING_QUEUED:
            accepted = replace(
                move(order, OrderStatus.PENDING, "pending"),
                requested_price=level or order.requested_price,
                lp_order_id=lp_order_id,
            )
            return _commit(order, accepted, account, report, EventKind.PENDING_ACCEPTED, now)
        if (
            order.status is OrderStatus.PENDING
            and report.ord_status is ReportStatus.MODIFY
            and level is not None
            and level != order.requested_price
        ):
            # the LP moved the resting order on its own
            moved = replace(move(order, OrderStatus.PENDING, "pending"), requested_price=level)
            return _commit(order, moved, account, report, EventKind.PENDING_MODIFIED, now)
        return Stale("already_accepted")
    if order.status is OrderStatus.MODIFYING:
        modified = replace(
            move(order, OrderStatus.PENDING, "pending"),
            requested_price=level or order.new_price or order.requested_price,
            new_price=None,
            lp_order_id=lp_order_id,
        )
        return _commit(order, modified, account, report, EventKind.PENDING_MODIFIED, now)
    if order.status in _NOT_YET:
        return TooEarly("modification_not_sent")
    return Stale("modification_already_settled")


def _client_level(
    order: Order, instrument: InstrumentConfig, report: ExecutionReport
) -> Decimal | None:
    level = report.level
    if level is None:
        return None
    # the request was sent at the LP level; the client's level is the inverse shift
    return client_price(order.side, level, instrument.half_spread)


def _commit(
    before: Order,
    order: Order,
    account: Account,
    report: ExecutionReport,
    event: EventKind,
    now: datetime,
) -> Outcome:
    return commit(
        before=before,
        order=order,
        account_before=account,
        account=account,
        report=report,
        event=event,
        now=now,
    )
