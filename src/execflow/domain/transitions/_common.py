"""Shared steps of every transition: idempotency, state-machine checks, commit, legs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from execflow.domain.account_rows import ACCOUNT_CHANGES, account_changes
from execflow.domain.codec import (
    account_header_to_dict,
    order_snapshot,
    report_to_dict,
    request_to_dict,
)
from execflow.domain.effects import (
    Calculation,
    DbEvent,
    Effect,
    EventKind,
    LpRequest,
    OutboxEntry,
    event_id,
)
from execflow.domain.enums import LegKind, LegState, LpOrderType, OrderStatus, RequestKind
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import Account, InstrumentConfig, Leg, Order, Prices
from execflow.domain.money import lp_price
from execflow.domain.outcomes import OVERFILL, Applied, Duplicate, Mismatch, Outcome
from execflow.domain.statemachine import check_leg_edge, check_order_edge

__all__ = [
    "FOLLOW_UPS",
    "OUTBOX_SIZE",
    "Transition",
    "cancel_leg",
    "commit",
    "duplicate",
    "event_payload",
    "fill_progress",
    "leg_cancel_id",
    "leg_lifecycle_id",
    "move",
    "move_leg",
    "overfill",
    "place_leg",
    "strs",
]

Transition = Callable[
    [Order, Account, InstrumentConfig, Prices, ExecutionReport, RequestKind, datetime], Outcome
]
"""Signature shared by every worker transition."""

FOLLOW_UPS = "follow_ups"
"""DB event payload key: the LP requests the transition sent (codec dicts), in order."""

OUTBOX_SIZE = 8
"""Outbox entries kept per order. A redelivery follows a crash within seconds, long
before eight further reports of the same order can be applied; older effects were
published (the message that caused them was acked only after publishing)."""


def duplicate(order: Order, report: ExecutionReport) -> Duplicate | None:
    """Duplicate (with the recorded effects) when the exec_id is in the ledger."""
    if not order.has_applied(report.exec_id):
        return None
    for entry in order.outbox:
        if entry.exec_id == report.exec_id:
            return Duplicate(entry.effects)
    return Duplicate(())


def move(order: Order, target: OrderStatus, actor: str) -> Order:
    """Change the status along an edge of the state machine (or raise TransitionError)."""
    check_order_edge(order.status, target, actor)
    return replace(order, status=target)


def move_leg(order: Order, kind: LegKind, leg: Leg, actor: str) -> Order:
    """Replace a leg, checking its state change against the leg state machine."""
    old = order.leg(kind)
    if old.state is not leg.state or leg.state is LegState.ACTIVE:
        check_leg_edge(old.state, leg.state, actor)
    return replace(order, sl=leg) if kind is LegKind.SL else replace(order, tp=leg)


def strs(**values: object) -> dict[str, str]:
    """Calculation fields as strings (Decimals keep their exact text)."""
    return {k: "" if v is None else str(v) for k, v in values.items()}


def commit(
    *,
    before: Order,
    order: Order,
    account_before: Account,
    account: Account,
    report: ExecutionReport,
    event: EventKind,
    now: datetime,
    follow_ups: tuple[Effect, ...] = (),
    calculations: tuple[Calculation, ...] = (),
) -> Applied:
    """Finish a transition: ledger, version, DB event, outbox; one atomic write follows."""
    new_order = replace(
        order,
        updated_at=now,
        version=before.version + 1,
        applied_exec_ids=(*before.applied_exec_ids, report.exec_id),
    )
    new_account = account
    if account != account_before:
        new_account = replace(account, version=account_before.version + 1)
    payload = event_payload(new_order, account_before, new_account, report_to_dict(report))
    requests = [request_to_dict(f.request) for f in follow_ups if isinstance(f, LpRequest)]
    if requests:
        # The database keeps what the outbox keeps: a state rebuilt from it can re-send a
        # follow-up request whose first send was lost with the store (docs/state-rebuild.md).
        payload[FOLLOW_UPS] = requests
    db_event = DbEvent(
        event_id=event_id(before.order_id, report.exec_id, event),
        kind=event,
        account_id=before.account_id,
        order_id=before.order_id,
        exec_id=report.exec_id,
        payload=payload,
    )
    effects: tuple[Effect, ...] = (db_event, *follow_ups)
    outbox = (*before.outbox, OutboxEntry(report.exec_id, effects))[-OUTBOX_SIZE:]
    return Applied(replace(new_order, outbox=outbox), new_account, effects, calculations)


def event_payload(
    order: Order, account_before: Account, account: Account, report: Mapping[str, object] | None
) -> dict[str, object]:
    """The order's snapshot, the account's header and what changed in it, money deltas.

    Enough to recompute the account from events (``domain.account_rows``): the header is a
    constant size and ``account_changes`` names only the positions and reservations the
    transition touched, so the event does not grow with the account (DESIGN §5).
    """
    payload: dict[str, object] = {
        "order": order_snapshot(order),
        "account": account_header_to_dict(account),
    }
    if account is not account_before:
        changes = account_changes(account_before, account, (order.order_id,))
        if changes:
            payload[ACCOUNT_CHANGES] = changes
    payload["deltas"] = strs(
        balance=account.balance - account_before.balance,
        used_margin_executed=account.used_margin_executed - account_before.used_margin_executed,
        used_margin_all=account.used_margin_all - account_before.used_margin_all,
    )
    payload["report"] = None if report is None else dict(report)
    return payload


def fill_progress(
    prev_cum: Decimal, prev_avg: Decimal | None, report: ExecutionReport
) -> tuple[Decimal, Decimal] | None:
    """Cumulative (quantity, average price) after this fill, or None if underivable.

    Cumulative fields (14, 6) win; a report with only last_qty / last_px adds to what
    was already applied.
    """
    if report.cum_qty is not None:
        if report.avg_px is not None and report.avg_px > 0:
            return report.cum_qty, report.avg_px
        if report.last_px is None:
            return None
        if prev_cum == 0 and (report.last_qty is None or report.last_qty == report.cum_qty):
            return report.cum_qty, report.last_px
        if prev_avg is not None and report.last_qty == report.cum_qty - prev_cum:
            total = prev_avg * prev_cum + report.last_px * report.last_qty
            return report.cum_qty, total / report.cum_qty
        return None
    if report.last_qty is None or report.last_px is None:
        return None
    cum = prev_cum + report.last_qty
    total = (prev_avg or Decimal(0)) * prev_cum + report.last_px * report.last_qty
    return cum, total / cum


def overfill(cum: Decimal, limit: Decimal, report: ExecutionReport) -> Mismatch:
    """The fill would take the cumulative quantity past ``limit``: never applied."""
    said = "cum_qty" if report.cum_qty is not None else "last_qty"
    return Mismatch(OVERFILL, {said: f"report={cum} cumulative expected=<= {limit}"})


def leg_lifecycle_id(order_id: str, kind: LegKind, sequence: int) -> str:
    """Deterministic lifecycle id of the n-th placement of a leg."""
    return f"{order_id}-{kind.value.lower()}-{sequence}"


def leg_cancel_id(order_id: str, kind: LegKind, sequence: int) -> str:
    """Deterministic lifecycle id of the cancel of the n-th placement of a leg."""
    return f"{order_id}-{kind.value.lower()}-{sequence}-cancel"


def place_leg(
    order: Order,
    kind: LegKind,
    price: Decimal,
    instrument: InstrumentConfig,
    actor: str,
    lifecycle_id: str | None = None,
) -> tuple[Order, LpRequest]:
    """Leg -> REQUESTED and the PLACE_SL / PLACE_TP request at the LP's level.

    The leg closes the position, so it executes on the opposite side; the LP level is
    shifted by the half spread so the client's close price equals the client's level.
    """
    old = order.leg(kind)
    sequence = old.sequence + 1
    lid = lifecycle_id or leg_lifecycle_id(order.order_id, kind, sequence)
    exec_side = order.side.opposite
    level = lp_price(exec_side, price, instrument.half_spread)
    is_sl = kind is LegKind.SL
    request = ProviderRequest(
        lifecycle_id=lid,
        kind=RequestKind.PLACE_SL if is_sl else RequestKind.PLACE_TP,
        account_id=order.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=exec_side,
        order_type=LpOrderType.STOP if is_sl else LpOrderType.LIMIT,
        qty=order.cum_qty,
        price=None if is_sl else level,
        stop_px=level if is_sl else None,
        group=order.group,
    )
    leg = Leg(LegState.REQUESTED, price, lid, None, sequence, None)
    return move_leg(order, kind, leg, actor), LpRequest(request)


def cancel_leg(
    order: Order, kind: LegKind, actor: str, lifecycle_id: str | None = None
) -> tuple[Order, LpRequest]:
    """Leg -> CANCEL_REQUESTED and the CANCEL_SL / CANCEL_TP request."""
    old = order.leg(kind)
    lid = lifecycle_id or leg_cancel_id(order.order_id, kind, old.sequence)
    request = ProviderRequest(
        lifecycle_id=lid,
        kind=RequestKind.CANCEL_SL if kind is LegKind.SL else RequestKind.CANCEL_TP,
        account_id=order.account_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side.opposite,
        order_type=LpOrderType.STOP if kind is LegKind.SL else LpOrderType.LIMIT,
        qty=order.cum_qty,
        orig_lifecycle_id=old.lifecycle_id,
        group=order.group,
    )
    leg = replace(old, state=LegState.CANCEL_REQUESTED, cancel_lifecycle_id=lid)
    return move_leg(order, kind, leg, actor), LpRequest(request)
