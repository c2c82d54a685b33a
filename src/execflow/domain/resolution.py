"""An operator's resolution of a stuck order, as the execution report the LP never sent.

``execflow order resolve`` must run the very transitions a report would: so the
operator's decision (cancelled, rejected, filled at a price) becomes a synthetic
``ExecutionReport`` answering the unanswered request (``stuck.in_flight``), routed by
the dispatcher's table and applied by the worker's transition. The money rules are the
transition's own, and so is the report guard's: ``price`` is the LP's average price
(FIX AvgPx), checked against the price band around the quote, shifted by the half spread
and converted to USD exactly as for a real fill. The report says it came from
an operator (``provider="operator"``, exec_id ``operator:<id>``), and every DB event of
the transition carries who resolved it and why (``payload["operator"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from execflow.domain.effects import DbEvent, Effect
from execflow.domain.enums import LegKind, ReportStatus
from execflow.domain.guard import expected_side
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Order
from execflow.domain.outcomes import Applied
from execflow.domain.routing import Route, Worker, route
from execflow.domain.stuck import InFlight, in_flight

__all__ = [
    "OPERATOR_PROVIDER",
    "OperatorNote",
    "Plan",
    "Refusal",
    "Resolution",
    "operator_exec_id",
    "plan_resolution",
    "with_note",
]

OPERATOR_PROVIDER = "operator"
"""``ExecutionReport.provider`` of a report made by ``execflow order resolve``."""


class Resolution(StrEnum):
    """What the operator says became of the unanswered request."""

    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FILLED = "filled"

    @property
    def report_status(self) -> ReportStatus:
        """The LP status a report saying the same would carry."""
        return _STATUSES[self]


_STATUSES = {
    Resolution.CANCELLED: ReportStatus.CANCELLED,
    Resolution.REJECTED: ReportStatus.REJECTED,
    Resolution.FILLED: ReportStatus.EXECUTED,
}


@dataclass(frozen=True, slots=True)
class OperatorNote:
    """Who resolved an order, why, and as what; written into every DB event's payload."""

    operator: str
    reason: str
    resolution: Resolution

    def to_payload(self) -> dict[str, str]:
        """The ``payload["operator"]`` of the DB events."""
        return {"name": self.operator, "reason": self.reason, "resolution": self.resolution.value}


@dataclass(frozen=True, slots=True)
class Refusal:
    """The resolution cannot be applied; nothing was changed."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """The request being answered, the worker the table routes the answer to, the report."""

    request: InFlight
    worker: Worker
    report: ExecutionReport


def operator_exec_id(unique: str) -> str:
    """The exec_id of an operator's report (kept in the order's exec_id ledger)."""
    return f"{OPERATOR_PROVIDER}:{unique}"


def plan_resolution(
    order: Order,
    note: OperatorNote,
    exec_id: str,
    now: datetime,
    *,
    price: Decimal | None = None,
    leg: LegKind | None = None,
) -> Plan | Refusal:
    """The report answering the order's unanswered request as the operator says, and its worker.

    Refused when the order is final (unless a leg's cancel still waits: a closed
    position's counterpart cancel), has no request in flight (a resting PENDING order,
    an OPEN position without a leg request), the request is ambiguous (two legs waiting:
    say which with ``leg``), or the price does not fit the resolution.
    """
    if order.status.is_final and not in_flight(order):
        return Refusal("order_final", order.status.value)
    request = _pick(order, leg)
    if isinstance(request, Refusal):
        return request
    filled = note.resolution is Resolution.FILLED
    if filled and (price is None or price <= 0):
        return Refusal("price_required", "--as filled needs the LP's fill price (> 0)")
    if not filled and price is not None:
        return Refusal("price_not_allowed", f"--as {note.resolution.value} takes no price")
    status = note.resolution.report_status
    decision = route(request.kind, status)
    if not isinstance(decision, Route):
        return Refusal("unroutable", f"{request.kind.value} answered {status.value}")
    side = expected_side(order, request.kind)  # the guard checks the report against it
    closing = side is not order.side
    qty = (order.cum_qty if closing else order.qty) if filled else None
    report = ExecutionReport(
        exec_id=exec_id,
        ord_status=status,
        lifecycle_id=request.lifecycle_id,
        lp_order_id=order.lp_order_id,
        avg_px=price if filled else None,
        cum_qty=qty,
        side=side,
        symbol=order.symbol,
        reason=note.reason,
        transact_time=now,
        provider=OPERATOR_PROVIDER,
    )
    return Plan(request, decision.worker, report)


def _pick(order: Order, leg: LegKind | None) -> InFlight | Refusal:
    waiting = in_flight(order)
    if not waiting:
        return Refusal("nothing_in_flight", f"{order.status.value}: no request waits for the LP")
    if leg is not None:
        for request in waiting:
            if request.leg is leg:
                return request
        return Refusal("leg_not_in_flight", f"the {leg.value} leg has no request waiting")
    own = [request for request in waiting if request.leg is None]
    if own:
        return own[0]
    if len(waiting) > 1:
        legs = ", ".join(r.leg.value for r in waiting if r.leg is not None)
        return Refusal("several_in_flight", f"requests of legs {legs} wait: choose one with --leg")
    return waiting[0]


def with_note(applied: Applied, note: OperatorNote) -> Applied:
    """``applied`` with every DB event (and its outbox copy) carrying ``note``.

    Applied before the commit, so a redelivered (re-run) resolution re-publishes the
    same annotated events from the outbox.
    """
    exec_id = applied.order.applied_exec_ids[-1]
    marked = note.to_payload()
    effects: tuple[Effect, ...] = tuple(
        replace(e, payload={**e.payload, "operator": marked}) if isinstance(e, DbEvent) else e
        for e in applied.effects
    )
    outbox = tuple(
        replace(entry, effects=effects) if entry.exec_id == exec_id else entry
        for entry in applied.order.outbox
    )
    return replace(applied, order=replace(applied.order, outbox=outbox), effects=effects)
