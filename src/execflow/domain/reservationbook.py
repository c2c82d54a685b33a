"""An account's margin reservations kept so a transition costs what it changed.

Every order in flight, a pending order included, holds a reservation on its account
(``domain.accounting.reserve``) until its fill, reject or cancel. An account's
reservations are a tuple sorted by order id. Filtering, summing and sorting the whole
tuple on each reserve or release made a transition on an account with 1,000 pending
orders cost some 60 times one on an account with one (``bench/account_reservations.py``).
Here a reservation goes in or out by bisection, and the tuple's total is kept beside it,
moved by the one amount that changed.

The total is the walk's, to the digit and to the text: ``sum(amounts, Decimal(0))`` is
exact for booked amounts, and its exponent is the smaller of ``0`` and the amounts'
exponent when they share one (booked USD always do: two places). The running total is
moved exactly while they do, and walked again when they do not, so ``used_margin_all``
reads the same as a full walk gives after any sequence
(``tests/domain/test_reservationbook.py``).

Entries are memoised by the identity of the tuple they describe, as
``domain.positionbook`` does for positions; a tuple not seen here (decoded afresh, built by
hand) is checked, sorted if need be, and summed once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from execflow.domain.editmemo import Edit, EditMemo, ascending_ids, by_order_id, find
from execflow.domain.models import ZERO, Reservation

__all__ = [
    "SMALL",
    "ReservationTotal",
    "amount_for",
    "dropped",
    "edit_of",
    "put",
    "sorted_total",
    "spliced",
    "total_of",
]

Reservations = tuple[Reservation, ...]


SMALL = 32
"""Below this many reservations a tuple is simply walked, as before this module: the
bookkeeping would cost more than the walk it saves."""

_ENTRIES: EditMemo[ReservationTotal] = EditMemo(512)
"""Totals remembered (two per account traded, as ``positionbook``'s books)."""


@dataclass(frozen=True, slots=True)
class ReservationTotal:
    """The sum of one sorted reservations tuple, its length, and the exponent its amounts
    share (``None`` when none or mixed: the total is then walked, not moved)."""

    total: Decimal
    count: int
    exponent: int | None

    @classmethod
    def of(cls, reservations: Iterable[Reservation]) -> ReservationTotal:
        """The total of ``reservations`` by one walk."""
        amounts = [r.amount for r in reservations]
        exponents = {_exponent(amount) for amount in amounts}
        shared = exponents.pop() if len(exponents) == 1 else None
        return cls(sum(amounts, ZERO), len(amounts), shared)

    def moved(self, added: Decimal | None, removed: Decimal | None) -> ReservationTotal | None:
        """This total with ``added`` put in and ``removed`` taken out (either may be None);
        ``None`` when the amounts' exponents are not all one (then walk the tuple: the
        walk's text follows the smallest exponent held)."""
        count, total, shared = self.count, self.total, self.exponent
        if count and shared is None:  # mixed, or a NaN or infinity held: walked
            return None
        if removed is not None:
            if _exponent(removed) != shared:
                return None
            count, total = count - 1, total - removed
        if added is not None:
            exponent = _exponent(added)
            if count and (exponent is None or exponent != shared):
                return None
            shared = exponent
            count, total = count + 1, (total + added if count else ZERO + added)
        if not count:  # the walk's empty sum
            return _EMPTY
        return ReservationTotal(total, count, shared)


_EMPTY = ReservationTotal(ZERO, 0, None)


def _exponent(amount: Decimal) -> int | None:
    exponent = amount.as_tuple().exponent
    return exponent if isinstance(exponent, int) else None


def total_of(reservations: Reservations) -> ReservationTotal | None:
    """The remembered total of exactly this tuple (sorted, one reservation per order id)."""
    return _ENTRIES.get(reservations)


def edit_of(reservations: Reservations) -> Edit | None:
    """How this exact tuple was made from an earlier one, when remembered."""
    return _ENTRIES.edit_of(reservations)


def sorted_total(reservations: Iterable[Reservation]) -> tuple[Reservations, Decimal]:
    """The reservations sorted by order id and their total (remembered when ids are unique
    and there are enough of them, ``SMALL``).

    A stable sort, as the full walk did: a hand-built tuple holding one order id twice
    keeps both, in their order, and is not remembered (``put`` and ``dropped`` then take
    the walk's path with it).
    """
    if isinstance(reservations, tuple):
        found = total_of(reservations)
        if found is not None:
            return reservations, found.total
        if len(reservations) >= SMALL and ascending_ids(reservations):  # decoded: sorted
            made = ReservationTotal.of(reservations)
            _ENTRIES.remember(reservations, made)
            return reservations, made.total
    ordered = by_order_id(reservations)
    if len(ordered) < SMALL:
        return ordered, sum((r.amount for r in ordered), ZERO)
    total = ReservationTotal.of(ordered)
    if ascending_ids(ordered):
        _ENTRIES.remember(ordered, total)
    return ordered, total.total


def put(reservations: Reservations, reservation: Reservation) -> tuple[Reservations, Decimal]:
    """``reservations`` with ``reservation`` held, replacing any earlier one of its order."""
    known = total_of(reservations)
    if known is None:
        kept = (r for r in reservations if r.order_id != reservation.order_id)
        return sorted_total((*kept, reservation))
    at, there = find(reservations, reservation.order_id)
    made, total = _edited(reservations, known, at, int(there), (reservation,))
    return made, total.total


def dropped(reservations: Reservations, order_id: str) -> tuple[Reservations, Decimal]:
    """``reservations`` without the reservation of ``order_id`` (the same tuple when none)."""
    known = total_of(reservations)
    if known is None:
        return sorted_total(r for r in reservations if r.order_id != order_id)
    at, there = find(reservations, order_id)
    if not there:
        return reservations, known.total
    made, total = _edited(reservations, known, at, 1, ())
    return made, total.total


def spliced(parent: Reservations, at: int, taken: int, items: Reservations) -> Reservations:
    """``parent`` with ``taken`` (0 or 1) items at ``at`` replaced by ``items`` (0 or 1): an
    account's reservations as another process changed them (``pipeline.decoded``). The
    total is moved, not walked, when ``parent`` is remembered (or is now: a tuple decoded
    whole is checked and summed once) and the result is still sorted with unique ids."""
    known = total_of(parent)
    if known is None and len(parent) >= SMALL:
        sorted_total(parent)
        known = total_of(parent)
    made = (*parent[:at], *items, *parent[at + taken :])
    if known is None or len(items) > 1 or taken > 1:
        return made
    if items and not (
        (at == 0 or made[at - 1].order_id < made[at].order_id)
        and (at + 1 == len(made) or made[at].order_id < made[at + 1].order_id)
    ):
        return made
    return _edited(parent, known, at, taken, items)[0]


def _edited(
    parent: Reservations, known: ReservationTotal, at: int, taken: int, items: Reservations
) -> tuple[Reservations, ReservationTotal]:
    """``parent`` (remembered with ``known``) with ``taken`` items at ``at`` replaced by
    ``items`` (each at most one, still sorted): the new tuple, remembered with its total
    moved (walked when it cannot be) and the ``Edit`` that made it."""
    made = (*parent[:at], *items, *parent[at + taken :])
    added = items[0].amount if items else None
    removed = parent[at].amount if taken else None
    total = known.moved(added, removed) or ReservationTotal.of(made)
    _ENTRIES.remember(made, total, Edit(parent, at, taken, inserted=bool(items)))
    return made, total


def amount_for(reservations: Reservations, order_id: str) -> Decimal:
    """Margin reserved for one order (0 when none), as ``Account.reservation_for``."""
    if total_of(reservations) is None:
        return sum((r.amount for r in reservations if r.order_id == order_id), ZERO)
    at, there = find(reservations, order_id)
    if there:
        return ZERO + reservations[at].amount  # the walk's sum: ZERO plus the one amount
    return ZERO
