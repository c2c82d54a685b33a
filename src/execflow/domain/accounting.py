"""Account-level bookkeeping: reservations, positions and the derived used margins.

``used_margin_executed`` and ``used_margin_all`` are always derived from the positions
and reservations, never incremented field by field, so they return to exactly zero when
the last position closes, whatever the order of events was. The executed margin comes
from the positions' per-symbol aggregates (``domain.positionbook``): opening or closing
one position re-derives its symbol only, and a position goes into (or out of) the sorted
tuple where it belongs instead of the whole tuple being sorted again. The version is not
touched here: a transition bumps it once, when it commits.
"""

from __future__ import annotations

from decimal import Decimal

from execflow.domain.editmemo import Edit, find
from execflow.domain.frozen import replace
from execflow.domain.models import Account, Position, Reservation
from execflow.domain.positionbook import (
    PositionBook,
    book_of,
    remember,
    sorted_book,
)
from execflow.domain.reservationbook import (
    amount_for,
    dropped,
    put,
    sorted_total,
)

__all__ = [
    "add_position",
    "close_position",
    "release",
    "reservation_of",
    "reserve",
    "with_margins",
]


def with_margins(
    account: Account,
    positions: tuple[Position, ...],
    reservations: tuple[Reservation, ...],
    balance: Decimal | None = None,
) -> Account:
    """New account with these positions and reservations and the margins derived from them."""
    ordered, book = sorted_book(positions)
    held, total = sorted_total(reservations)
    return _derived(account, ordered, book, held, total, balance)


def _derived(
    account: Account,
    positions: tuple[Position, ...],
    book: PositionBook,
    reservations: tuple[Reservation, ...],
    reserved: Decimal,
    balance: Decimal | None,
) -> Account:
    return replace(
        account,
        positions=positions,
        reservations=reservations,
        used_margin_executed=book.executed,
        used_margin_all=book.executed + reserved,
        balance=account.balance if balance is None else balance,
    )


def reserve(account: Account, order_id: str, amount: Decimal) -> Account:
    """Hold ``amount`` (booked USD) for an order in flight, replacing any earlier hold."""
    positions, book = sorted_book(account.positions)
    held, total = put(account.reservations, Reservation(order_id, amount))
    return _derived(account, positions, book, held, total, None)


def release(account: Account, order_id: str) -> Account:
    """Drop the reservation of an order."""
    positions, book = sorted_book(account.positions)
    held, total = dropped(account.reservations, order_id)
    return _derived(account, positions, book, held, total, None)


def reservation_of(account: Account, order_id: str) -> Decimal:
    """Margin reserved for one order (0 when none): ``account.reservation_for(order_id)``,
    found by bisection in a tuple kept here rather than by a walk."""
    return amount_for(account.reservations, order_id)


def add_position(account: Account, position: Position) -> Account:
    """Open a position: its reservation is released and executed margin re-derived."""
    held, total = dropped(account.reservations, position.order_id)
    positions = account.positions
    book = book_of(positions)
    if book is None:  # a tuple not derived here: sorted and walked once
        kept_pos = tuple(p for p in positions if p.order_id != position.order_id)
        ordered, made = sorted_book((*kept_pos, position))
        return _derived(account, ordered, made, held, total, None)
    parent, removed = positions, 0
    at, there = find(positions, position.order_id)
    if there:
        rest = positions[:at] + positions[at + 1 :]
        book = book.closed(positions[at], rest)
        positions, removed = rest, 1
    added = (*positions[:at], position, *positions[at:])
    book = book.opened(position)
    remember(added, book, Edit(parent, at, removed, inserted=True))
    return _derived(account, added, book, held, total, None)


def close_position(account: Account, order_id: str, net_profit: Decimal) -> Account:
    """Close a position: margin re-derived, balance += net profit (already booked)."""
    positions = account.positions
    balance = account.balance + net_profit
    held, total = sorted_total(account.reservations)
    book = book_of(positions)
    if book is None:  # a tuple not derived here: sorted and walked once
        kept = tuple(p for p in positions if p.order_id != order_id)
        ordered, made = sorted_book(kept)
        return _derived(account, ordered, made, held, total, balance)
    at, there = find(positions, order_id)
    if there:
        rest = positions[:at] + positions[at + 1 :]
        book = book.closed(positions[at], rest)
        remember(rest, book, Edit(positions, at, 1, inserted=False))
        positions = rest
    return _derived(account, positions, book, held, total, balance)
