"""Account-level bookkeeping: reservations, positions and the derived used margins.

``used_margin_executed`` and ``used_margin_all`` are always recomputed from the
positions and reservations instead of being incremented, so they return to exactly zero
when the last position closes, whatever the order of events was. The version is not
touched here: a transition bumps it once, when it commits.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from execflow.domain.models import Account, Position, Reservation
from execflow.domain.money import used_margin_executed

__all__ = ["add_position", "close_position", "release", "reserve", "with_margins"]


def with_margins(
    account: Account,
    positions: tuple[Position, ...],
    reservations: tuple[Reservation, ...],
    balance: Decimal | None = None,
) -> Account:
    """New account with these positions and reservations and the margins derived from them."""
    executed = used_margin_executed(positions)
    reserved = sum((r.amount for r in reservations), Decimal(0))
    return replace(
        account,
        positions=tuple(sorted(positions, key=lambda p: p.order_id)),
        reservations=tuple(sorted(reservations, key=lambda r: r.order_id)),
        used_margin_executed=executed,
        used_margin_all=executed + reserved,
        balance=account.balance if balance is None else balance,
    )


def reserve(account: Account, order_id: str, amount: Decimal) -> Account:
    """Hold ``amount`` (booked USD) for an order in flight, replacing any earlier hold."""
    kept = tuple(r for r in account.reservations if r.order_id != order_id)
    return with_margins(account, account.positions, (*kept, Reservation(order_id, amount)))


def release(account: Account, order_id: str) -> Account:
    """Drop the reservation of an order."""
    kept = tuple(r for r in account.reservations if r.order_id != order_id)
    return with_margins(account, account.positions, kept)


def add_position(account: Account, position: Position) -> Account:
    """Open a position: its reservation is released and executed margin re-derived."""
    kept_res = tuple(r for r in account.reservations if r.order_id != position.order_id)
    kept_pos = tuple(p for p in account.positions if p.order_id != position.order_id)
    return with_margins(account, (*kept_pos, position), kept_res)


def close_position(account: Account, order_id: str, net_profit: Decimal) -> Account:
    """Close a position: margin re-derived, balance += net profit (already booked)."""
    kept = tuple(p for p in account.positions if p.order_id != order_id)
    return with_margins(account, kept, account.reservations, account.balance + net_profit)
