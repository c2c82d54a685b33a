"""Figures memoised by the identity of the sorted tuple they describe, and how it was made.

An account's positions (``domain.positionbook``) and reservations
(``domain.reservationbook``) are tuples sorted by order id. A transition changes one item
of one of them, so its figures (per-symbol margins, the reserved total) are the parent
tuple's moved by that item, and the codec encodes the new tuple from the parent's encoding
(``codec.account_document``) when it knows how the one was made from the other (``Edit``).
Both keep their figures here, by the identity of the tuple: the account a worker committed
is the object it reads next (``pipeline.decoded``), so the next transition finds them.

Each entry keeps its tuple alive (so its id cannot be reused while the entry lives). An
account's chain keeps two: its newest tuple and the one it was made from (the state a
failed commit retries from); remembering a tuple forgets its grandparent's entry. A full
memo starts over.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Generic, TypeVar

__all__ = ["Edit", "EditMemo", "ascending_ids", "by_order_id", "find"]

V = TypeVar("V")
T = TypeVar("T")

_ORDER_ID = operator.attrgetter("order_id")


@dataclass(frozen=True, slots=True)
class Edit:
    """How a tuple was made from another: ``removed`` items at ``at`` taken out, then
    (``inserted``) the new tuple's item at ``at`` put in."""

    parent: tuple[Any, ...]
    at: int
    removed: int
    inserted: bool


class EditMemo(Generic[V]):
    """Per tuple (by identity): a value and the ``Edit`` that made it, when known."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int = 512) -> None:
        self._entries: dict[int, tuple[tuple[Any, ...], V, Edit | None]] = {}
        self._max_entries = max_entries

    def get(self, items: tuple[Any, ...]) -> V | None:
        """The value remembered for exactly this tuple."""
        hit = self._entries.get(id(items))
        return hit[1] if hit is not None and hit[0] is items else None

    def edit_of(self, items: tuple[Any, ...]) -> Edit | None:
        """How exactly this tuple was made from an earlier one, when remembered."""
        hit = self._entries.get(id(items))
        return hit[2] if hit is not None and hit[0] is items else None

    def remember(self, items: tuple[Any, ...], value: V, edit: Edit | None = None) -> None:
        """Record ``value`` for ``items`` (and how it was made), forgetting the entry of
        the tuple its parent was made from: an account's older tuples are superseded, and
        keeping each (a whole tuple per transition) made the memo hold hundreds of copies of
        one large account until it started over."""
        entries = self._entries
        if edit is not None:
            hit = entries.get(id(edit.parent))
            if hit is not None and hit[0] is edit.parent and hit[2] is not None:
                grandparent = hit[2].parent
                old = entries.get(id(grandparent))
                if old is not None and old[0] is grandparent:
                    del entries[id(grandparent)]
        if len(entries) >= self._max_entries:
            entries.clear()
        entries[id(items)] = (items, value, edit)


def ascending_ids(items: Sequence[Any]) -> bool:
    """Sorted by order id, each order id once."""
    return all(a < b for a, b in pairwise(map(_ORDER_ID, items)))


def by_order_id(items: Iterable[T]) -> tuple[T, ...]:
    """``items`` sorted by order id."""
    return tuple(sorted(items, key=_ORDER_ID))


def find(items: Sequence[Any], order_id: str) -> tuple[int, bool]:
    """Where ``order_id`` is in a tuple sorted by order id (or would go), and whether the
    item there has it."""
    at = bisect_left(items, order_id, key=_ORDER_ID)
    return at, at < len(items) and items[at].order_id == order_id
