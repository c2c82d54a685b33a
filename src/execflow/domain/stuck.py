"""Stuck orders (DESIGN §11): which request of an order still waits for the LP, and for how long.

An order is *stuck* when a request it sent to the LP is unanswered and nothing has
happened to the order for ``after_s`` seconds. Unanswered requests, by status:

========================  =================================================
QUEUED                    OPEN (market order sent, margin reserved)
PENDING_QUEUED            PLACE_PENDING (not yet accepted)
MODIFYING                 MODIFY_PENDING
CANCELLING                CANCEL_PENDING
CLOSING                   CLOSE
OPEN / CLOSING, leg       PLACE_SL / PLACE_TP (leg REQUESTED),
                          CANCEL_SL / CANCEL_TP (leg CANCEL_REQUESTED)
CLOSED, leg               CANCEL_SL / CANCEL_TP (leg CANCEL_REQUESTED)
========================  =================================================

The last row is the cancel of the other leg the close worker sends when an SL or TP
fired: the position is closed, but until the LP confirms, an order of the client may
still be live at the LP (and could fill: ``both_legs_filled``).

Not stuck, however old: a PENDING order (accepted, resting at the LP: a limit may wait
for days), an OPEN position with no leg request in flight (its life is the client's),
and every other final order. "Activity" is the order's last transition (``updated_at``, set by
the intake and by every applied report), so one answered request makes the whole order
fresh again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from execflow.domain.enums import LegKind, LegState, OrderStatus, RequestKind
from execflow.domain.models import Order

__all__ = [
    "InFlight",
    "change_lifecycle_id",
    "in_flight",
    "is_stuck",
    "may_wait",
    "silent_for_s",
]


@dataclass(frozen=True, slots=True)
class InFlight:
    """A request sent to the LP and not answered yet."""

    kind: RequestKind
    lifecycle_id: str
    leg: LegKind | None = None


_ORDER_REQUESTS = {
    OrderStatus.QUEUED: RequestKind.OPEN,
    OrderStatus.PENDING_QUEUED: RequestKind.PLACE_PENDING,
    OrderStatus.MODIFYING: RequestKind.MODIFY_PENDING,
    OrderStatus.CANCELLING: RequestKind.CANCEL_PENDING,
    OrderStatus.CLOSING: RequestKind.CLOSE,
}
_CHANGE_ACTIONS = {RequestKind.MODIFY_PENDING: "modify", RequestKind.CANCEL_PENDING: "cancel"}
_LEG_REQUESTS = {
    (LegKind.SL, LegState.REQUESTED): RequestKind.PLACE_SL,
    (LegKind.SL, LegState.CANCEL_REQUESTED): RequestKind.CANCEL_SL,
    (LegKind.TP, LegState.REQUESTED): RequestKind.PLACE_TP,
    (LegKind.TP, LegState.CANCEL_REQUESTED): RequestKind.CANCEL_TP,
}
_WITH_LEGS = frozenset({OrderStatus.OPEN, OrderStatus.CLOSING, OrderStatus.CLOSED})
_WAITING_LEG_STATES = frozenset({LegState.REQUESTED, LegState.CANCEL_REQUESTED})


def change_lifecycle_id(order_id: str, action: str, version: int) -> str:
    """Lifecycle id of a change the intake sends for an order (modify, cancel, close, legs).

    ``version`` is the order's version once the change is committed: the version check
    lets one request per version through, so the id is unique.
    """
    return f"{order_id}-{action}-v{version}"


def in_flight(order: Order) -> tuple[InFlight, ...]:
    """The order's unanswered requests: the order's own first, then the SL, then the TP leg."""
    found: list[InFlight] = []
    kind = _ORDER_REQUESTS.get(order.status)
    if kind is RequestKind.OPEN or kind is RequestKind.PLACE_PENDING:
        found.append(InFlight(kind, order.lifecycle_id))
    elif kind is RequestKind.CLOSE and order.close_lifecycle_id is not None:
        found.append(InFlight(kind, order.close_lifecycle_id))
    elif kind is not None and kind in _CHANGE_ACTIONS:
        # The order does not keep this request's id; the intake derived it from the
        # version the change was committed at, which no later transition has bumped:
        # any answer moves the order out of MODIFYING / CANCELLING.
        lifecycle_id = change_lifecycle_id(order.order_id, _CHANGE_ACTIONS[kind], order.version)
        found.append(InFlight(kind, lifecycle_id))
    if order.status in _WITH_LEGS:
        for leg_kind in (LegKind.SL, LegKind.TP):
            leg = order.leg(leg_kind)
            leg_request = _LEG_REQUESTS.get((leg_kind, leg.state))
            leg_id = (
                leg.lifecycle_id if leg.state is LegState.REQUESTED else leg.cancel_lifecycle_id
            )
            if leg_request is not None and leg_id is not None:
                found.append(InFlight(leg_request, leg_id, leg_kind))
    return tuple(found)


def may_wait(status: str, sl_state: str | None, tp_state: str | None) -> bool:
    """False when an order with these (stored) status and leg states waits on nothing.

    A cheap first look at a stored document, before decoding it whole: most orders are
    final or plain positions. True does not mean a request is out (``in_flight`` decides).
    """
    if status in _ORDER_REQUESTS:
        return True
    return status in _WITH_LEGS and (
        sl_state in _WAITING_LEG_STATES or tp_state in _WAITING_LEG_STATES
    )


def silent_for_s(order: Order, now: datetime) -> float:
    """Seconds since the order's last activity (never negative)."""
    return max(0.0, (now - order.updated_at).total_seconds())


def is_stuck(order: Order, now: datetime, after_s: float) -> bool:
    """True when a request of the order waits and nothing happened for ``after_s`` seconds."""
    return bool(in_flight(order)) and silent_for_s(order, now) >= after_s
