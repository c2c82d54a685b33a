"""State of the domain: accounts, instruments, prices, orders and lifecycle records.

Every amount, quantity and price is a ``Decimal``; every timestamp is timezone-aware UTC.
All classes are frozen: a transition returns new values, it never mutates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from execflow.domain.effects import OutboxEntry
from execflow.domain.enums import (
    CloseReason,
    CommissionType,
    CommissionValueType,
    InstrumentType,
    LegKind,
    LegState,
    OrderStatus,
    OrderType,
    RequestKind,
    Side,
)
from execflow.domain.messages import ProviderRequest

__all__ = [
    "ZERO",
    "Account",
    "CommissionSnapshot",
    "InstrumentConfig",
    "Leg",
    "LifecycleRecord",
    "Order",
    "Position",
    "Prices",
    "Quote",
    "Reservation",
    "lifecycle_of",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    """One open position as the account's margin rule sees it (per-symbol hedging)."""

    order_id: str
    symbol: str
    side: Side
    lots: Decimal
    margin_per_lot_usd: Decimal


@dataclass(frozen=True, slots=True)
class Reservation:
    """Margin (USD, booked) held for an order still in flight at the LP."""

    order_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Account:
    """A client account; ``used_margin_*`` are derived from positions and reservations."""

    account_id: str
    currency: str
    balance: Decimal
    leverage: Decimal
    group: str
    used_margin_executed: Decimal = ZERO
    used_margin_all: Decimal = ZERO
    positions: tuple[Position, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    version: int = 0

    @property
    def free_margin(self) -> Decimal:
        """Balance minus all used margin (DESIGN §2)."""
        return self.balance - self.used_margin_all

    @property
    def reserved_total(self) -> Decimal:
        """Sum of the margin reserved for orders in flight."""
        return sum((r.amount for r in self.reservations), ZERO)

    def reservation_for(self, order_id: str) -> Decimal:
        """Margin reserved for one order (0 when none)."""
        return sum((r.amount for r in self.reservations if r.order_id == order_id), ZERO)

    def positions_for(self, symbol: str) -> tuple[Position, ...]:
        """Open positions of one symbol."""
        return tuple(p for p in self.positions if p.symbol == symbol)


@dataclass(frozen=True, slots=True)
class InstrumentConfig:
    """Trading conditions of one symbol for one account group."""

    group: str
    symbol: str
    contract_size: Decimal
    profit_currency: str
    instrument_type: InstrumentType
    spread: Decimal
    spread_pip: Decimal
    commission_rate: Decimal = ZERO
    commission_type: CommissionType = CommissionType.EVERY_TRADE
    commission_value_type: CommissionValueType = CommissionValueType.PER_LOT
    crypto_margin_factor: Decimal = Decimal(1)
    min_lots: Decimal = Decimal("0.01")
    max_lots: Decimal = Decimal(100)
    lot_step: Decimal = Decimal("0.01")

    @property
    def half_spread(self) -> Decimal:
        """hs = spread * spread_pip / 2, in price units."""
        return self.spread * self.spread_pip / 2


@dataclass(frozen=True, slots=True)
class Quote:
    """Raw LP bid/ask of one symbol; ``time`` is when it was received (None: unknown)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    time: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Prices:
    """The quotes known at the time of a transition, used for checks and conversion."""

    quotes: Mapping[str, Quote] = field(default_factory=dict)
    stale: frozenset[str] = frozenset()
    """Symbols whose quote is too old to use: left out of ``quotes``."""

    @classmethod
    def of(cls, *quotes: Quote) -> Prices:
        """Build from quotes (later ones win for the same symbol)."""
        return cls({q.symbol: q for q in quotes})

    def get(self, symbol: str) -> Quote | None:
        """The quote of a symbol, or None."""
        return self.quotes.get(symbol)

    def fresh_at(self, now: datetime, max_age_s: float) -> Prices:
        """These prices without the quotes received more than ``max_age_s`` before ``now``.

        ``max_age_s`` 0 keeps every quote; a quote without a time is never stale (its
        writer does not say when it was quoted).
        """
        if max_age_s <= 0:
            return self
        stale = {
            symbol
            for symbol, quote in self.quotes.items()
            if quote.time is not None and (now - quote.time).total_seconds() > max_age_s
        }
        if not stale:
            return self
        fresh = {s: q for s, q in self.quotes.items() if s not in stale}
        return Prices(fresh, self.stale | stale)


@dataclass(frozen=True, slots=True)
class CommissionSnapshot:
    """Commission configuration captured when the position opened (used again at exit)."""

    rate: Decimal
    commission_type: CommissionType
    value_type: CommissionValueType
    contract_size: Decimal


@dataclass(frozen=True, slots=True)
class Leg:
    """A stop-loss or take-profit leg; ``price`` is the client's level."""

    state: LegState = LegState.NONE
    price: Decimal | None = None
    lifecycle_id: str | None = None
    cancel_lifecycle_id: str | None = None
    sequence: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    """A client order and, once filled, its position.

    ``applied_exec_ids`` is the exec_id ledger: it is written in the same atomic transition
    as the state, so idempotency is decided by the transition itself. ``outbox`` keeps the
    effects of the most recent transitions keyed by exec_id, so a redelivered report can
    re-publish effects a crashed process may not have published.
    """

    order_id: str
    account_id: str
    group: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    status: OrderStatus
    lifecycle_id: str
    created_at: datetime
    updated_at: datetime
    requested_price: Decimal | None = None
    new_price: Decimal | None = None
    cum_qty: Decimal = ZERO
    avg_px: Decimal | None = None
    open_price: Decimal | None = None
    opened_at: datetime | None = None
    reserved_margin: Decimal = ZERO
    margin: Decimal = ZERO
    commission: CommissionSnapshot | None = None
    entry_commission: Decimal = ZERO
    exit_commission: Decimal = ZERO
    close_lifecycle_id: str | None = None
    close_cum_qty: Decimal = ZERO
    close_avg_px: Decimal | None = None
    close_price: Decimal | None = None
    closed_at: datetime | None = None
    profit: Decimal | None = None
    net_profit: Decimal | None = None
    swap: Decimal = ZERO
    close_reason: CloseReason | None = None
    reason: str | None = None
    lp_order_id: str | None = None
    sl: Leg = field(default_factory=Leg)
    tp: Leg = field(default_factory=Leg)
    version: int = 0
    applied_exec_ids: tuple[str, ...] = ()
    outbox: tuple[OutboxEntry, ...] = ()

    def leg(self, kind: LegKind) -> Leg:
        """The SL or TP leg."""
        return self.sl if kind is LegKind.SL else self.tp

    def has_applied(self, exec_id: str) -> bool:
        """True when the exec_id is in the ledger."""
        return exec_id in self.applied_exec_ids


@dataclass(frozen=True, slots=True)
class LifecycleRecord:
    """What one LP request (one ClOrdID) was about; recorded before the request leaves."""

    lifecycle_id: str
    account_id: str
    order_id: str
    kind: RequestKind


def lifecycle_of(request: ProviderRequest) -> LifecycleRecord:
    """The lifecycle record to register before ``request`` is sent."""
    return LifecycleRecord(request.lifecycle_id, request.account_id, request.order_id, request.kind)
