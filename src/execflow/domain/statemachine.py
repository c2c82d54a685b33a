"""The order and leg state machines as data; transitions may only follow these edges."""

from __future__ import annotations

from dataclasses import dataclass

from execflow.domain.enums import LegState, OrderStatus
from execflow.errors import TransitionError

__all__ = ["LEG_EDGES", "ORDER_EDGES", "Edge", "LegEdge", "check_leg_edge", "check_order_edge"]

_O = OrderStatus
_L = LegState


@dataclass(frozen=True, slots=True)
class Edge:
    """An allowed order status change; ``source`` None is a new order."""

    source: OrderStatus | None
    target: OrderStatus
    actor: str
    trigger: str


@dataclass(frozen=True, slots=True)
class LegEdge:
    """An allowed SL/TP leg state change."""

    source: LegState
    target: LegState
    actor: str
    trigger: str


ORDER_EDGES: tuple[Edge, ...] = (
    Edge(None, _O.QUEUED, "intake", "market order sent, margin reserved"),
    Edge(None, _O.PENDING_QUEUED, "intake", "pending order sent, margin reserved"),
    Edge(_O.PENDING, _O.MODIFYING, "intake", "modification sent"),
    Edge(_O.PENDING, _O.CANCELLING, "intake", "cancel sent"),
    Edge(_O.OPEN, _O.CLOSING, "intake", "close sent"),
    Edge(_O.QUEUED, _O.OPEN, "open", "final fill"),
    Edge(_O.PENDING_QUEUED, _O.OPEN, "open", "final fill before the acceptance"),
    Edge(_O.PENDING, _O.OPEN, "open", "pending order triggered and filled"),
    Edge(_O.MODIFYING, _O.OPEN, "open", "filled before the modification"),
    Edge(_O.CANCELLING, _O.OPEN, "open", "filled before the cancel"),
    Edge(_O.OPEN, _O.CLOSED, "close", "SL / TP triggered"),
    Edge(_O.CLOSING, _O.CLOSED, "close", "close filled"),
    Edge(_O.PENDING_QUEUED, _O.PENDING, "pending", "accepted by the LP"),
    Edge(_O.MODIFYING, _O.PENDING, "pending", "modification confirmed"),
    Edge(_O.PENDING, _O.PENDING, "pending", "modified by the LP"),
    Edge(_O.PENDING_QUEUED, _O.CANCELLED, "cancel", "cancelled before acceptance"),
    Edge(_O.PENDING, _O.CANCELLED, "cancel", "cancelled (expired) by the LP"),
    Edge(_O.MODIFYING, _O.CANCELLED, "cancel", "cancelled during a modification"),
    Edge(_O.CANCELLING, _O.CANCELLED, "cancel", "cancel confirmed"),
    Edge(_O.QUEUED, _O.REJECTED, "reject", "market order rejected or killed unfilled"),
    Edge(_O.PENDING_QUEUED, _O.REJECTED, "reject", "pending order rejected"),
    Edge(_O.MODIFYING, _O.PENDING, "reject", "modification rejected, old price kept"),
    Edge(_O.CANCELLING, _O.PENDING, "reject", "cancel rejected"),
    Edge(_O.CLOSING, _O.OPEN, "reject", "close rejected"),
)

LEG_EDGES: tuple[LegEdge, ...] = (
    LegEdge(_L.NONE, _L.REQUESTED, "open", "position opened with an SL/TP price"),
    LegEdge(_L.NONE, _L.REQUESTED, "intake", "SL/TP set on an open position"),
    LegEdge(_L.CANCELLED, _L.REQUESTED, "intake", "SL/TP set again"),
    LegEdge(_L.REJECTED, _L.REQUESTED, "intake", "SL/TP set again"),
    LegEdge(_L.REQUESTED, _L.ACTIVE, "stoploss/takeprofit", "accepted by the LP"),
    LegEdge(_L.ACTIVE, _L.ACTIVE, "stoploss/takeprofit", "modified by the LP"),
    LegEdge(_L.REQUESTED, _L.CANCEL_REQUESTED, "intake", "cancel sent"),
    LegEdge(_L.ACTIVE, _L.CANCEL_REQUESTED, "intake", "cancel sent"),
    LegEdge(_L.REQUESTED, _L.CANCEL_REQUESTED, "close", "position closed: cancel sent"),
    LegEdge(_L.ACTIVE, _L.CANCEL_REQUESTED, "close", "position closed: cancel sent"),
    LegEdge(_L.CANCEL_REQUESTED, _L.CANCELLED, "cancel", "cancel confirmed"),
    LegEdge(_L.ACTIVE, _L.CANCELLED, "cancel", "cancelled by the LP"),
    LegEdge(_L.REQUESTED, _L.CANCELLED, "cancel", "cancelled by the LP"),
    LegEdge(_L.REQUESTED, _L.TRIGGERED, "close", "filled before the acceptance"),
    LegEdge(_L.ACTIVE, _L.TRIGGERED, "close", "triggered and filled"),
    LegEdge(_L.CANCEL_REQUESTED, _L.TRIGGERED, "close", "filled before the cancel"),
    LegEdge(_L.REQUESTED, _L.REJECTED, "reject", "placement rejected"),
    LegEdge(_L.CANCEL_REQUESTED, _L.ACTIVE, "reject", "cancel rejected"),
)

_ORDER_INDEX = frozenset((e.source, e.target, e.actor) for e in ORDER_EDGES)
_LEG_INDEX = frozenset((e.source, e.target, e.actor) for e in LEG_EDGES)


def check_order_edge(source: OrderStatus | None, target: OrderStatus, actor: str) -> None:
    """Raise ``TransitionError`` unless the table allows this status change."""
    if (source, target, actor) not in _ORDER_INDEX:
        raise TransitionError(
            "order status change not in the state machine",
            source=str(source),
            target=str(target),
            actor=actor,
        )


def check_leg_edge(source: LegState, target: LegState, actor: str) -> None:
    """Raise ``TransitionError`` unless the table allows this leg state change."""
    if (source, target, actor) not in _LEG_INDEX:
        raise TransitionError(
            "leg state change not in the state machine",
            source=str(source),
            target=str(target),
            actor=actor,
        )
