"""Closed vocabularies of the domain: sides, order types, statuses, request kinds."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CloseReason",
    "CommissionType",
    "CommissionValueType",
    "InstrumentType",
    "LegKind",
    "LegState",
    "LpOrderType",
    "OrderStatus",
    "OrderType",
    "ReportStatus",
    "RequestKind",
    "Side",
]


class Side(StrEnum):
    """Direction of an order or a position."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        """The side that closes a position of this side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """What the client asked for."""

    MARKET = "MARKET"
    BUY_LIMIT = "BUY_LIMIT"
    SELL_LIMIT = "SELL_LIMIT"
    BUY_STOP = "BUY_STOP"
    SELL_STOP = "SELL_STOP"

    @property
    def is_pending(self) -> bool:
        """True for limit and stop orders (they rest at the LP)."""
        return self is not OrderType.MARKET

    @property
    def side(self) -> Side | None:
        """The side implied by a pending type; None for MARKET."""
        if self in (OrderType.BUY_LIMIT, OrderType.BUY_STOP):
            return Side.BUY
        if self in (OrderType.SELL_LIMIT, OrderType.SELL_STOP):
            return Side.SELL
        return None


class LpOrderType(StrEnum):
    """Order type as sent to the LP (FIX OrdType)."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"


class OrderStatus(StrEnum):
    """Order status (DESIGN §2)."""

    QUEUED = "QUEUED"
    PENDING_QUEUED = "PENDING_QUEUED"
    PENDING = "PENDING"
    MODIFYING = "MODIFYING"
    CANCELLING = "CANCELLING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        """Final statuses never change again."""
        return self in _FINAL_STATUSES

    @property
    def meaning(self) -> str:
        """One line for the generated documentation."""
        return _STATUS_MEANINGS[self]


_FINAL_STATUSES = frozenset({OrderStatus.CLOSED, OrderStatus.CANCELLED, OrderStatus.REJECTED})

_STATUS_MEANINGS = {
    OrderStatus.QUEUED: "market order sent to the LP; margin reserved",
    OrderStatus.PENDING_QUEUED: "pending order sent to the LP, not yet accepted",
    OrderStatus.PENDING: "pending order resting at the LP",
    OrderStatus.MODIFYING: "a modification of a pending order was sent",
    OrderStatus.CANCELLING: "a cancel of a pending order was sent",
    OrderStatus.OPEN: "position open",
    OrderStatus.CLOSING: "a close was sent",
    OrderStatus.CLOSED: "final: position closed, profit booked",
    OrderStatus.CANCELLED: "final: pending order cancelled, reservation released",
    OrderStatus.REJECTED: "final: the LP refused the order, reservation released",
}


class LegState(StrEnum):
    """State of a stop-loss or take-profit leg."""

    NONE = "NONE"
    REQUESTED = "REQUESTED"
    ACTIVE = "ACTIVE"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CANCELLED = "CANCELLED"
    TRIGGERED = "TRIGGERED"
    REJECTED = "REJECTED"


class LegKind(StrEnum):
    """Which protective leg."""

    SL = "SL"
    TP = "TP"


class CloseReason(StrEnum):
    """Why a position closed."""

    CLOSE = "CLOSE"
    STOPLOSS = "STOPLOSS"
    TAKEPROFIT = "TAKEPROFIT"


class RequestKind(StrEnum):
    """Kind of request a lifecycle id was issued for; routing keys on it."""

    OPEN = "OPEN"
    CLOSE = "CLOSE"
    PLACE_PENDING = "PLACE_PENDING"
    MODIFY_PENDING = "MODIFY_PENDING"
    CANCEL_PENDING = "CANCEL_PENDING"
    PLACE_SL = "PLACE_SL"
    PLACE_TP = "PLACE_TP"
    CANCEL_SL = "CANCEL_SL"
    CANCEL_TP = "CANCEL_TP"

    @property
    def leg(self) -> LegKind | None:
        """The protective leg this kind is about, if any."""
        if self in (RequestKind.PLACE_SL, RequestKind.CANCEL_SL):
            return LegKind.SL
        if self in (RequestKind.PLACE_TP, RequestKind.CANCEL_TP):
            return LegKind.TP
        return None


class ReportStatus(StrEnum):
    """Normalised LP status of an execution report (FIX 39 / 150)."""

    EXECUTED = "EXECUTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    PENDING = "PENDING"
    MODIFY = "MODIFY"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_fill(self) -> bool:
        """True when money may have moved."""
        return self in (ReportStatus.EXECUTED, ReportStatus.PARTIALLY_FILLED)


class InstrumentType(StrEnum):
    """Asset class; crypto margin uses an extra factor."""

    FOREX = "forex"
    METAL = "metal"
    INDEX = "index"
    CRYPTO = "crypto"


class CommissionType(StrEnum):
    """When commission is charged."""

    EVERY_TRADE = "EVERY_TRADE"
    ENTRY = "ENTRY"
    EXIT = "EXIT"


class CommissionValueType(StrEnum):
    """How the commission rate is applied."""

    PER_LOT = "PER_LOT"
    PERCENT = "PERCENT"
