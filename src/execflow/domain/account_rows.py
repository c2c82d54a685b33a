"""An account as a header plus rows: what a DB event says changed, and how rows fold back.

A DB event's payload carries the account's header (``account``: the fields of
``HEADER_FIELDS``, a constant size) and what the transition changed in its positions and
reservations (``account_changes``, DESIGN §5):

    {"positions":    {"upsert": [<position dict>, ...], "remove": [<order id>, ...]},
     "reservations": {"upsert": [<reservation dict>, ...], "remove": [<order id>, ...]}}

Only what changed is there: a kind, or one of its lists, is absent when empty, and the key
is absent when the transition left positions and reservations alone. Events written before
this shape carry the whole account under ``account`` (with ``positions`` and
``reservations``); both fold the same way.

The database keeps one row per (account, kind, order id) at the account version that set
it (``AccountRow``; a removal is a row marked not live), and the header at its version.
Folding is order-independent: the newest version of each row wins, the newest header
wins, and a whole-account snapshot at version v sets ``rows_from`` to v, so every row
older than v (which that snapshot already accounts for) no longer counts. The account is
then the header plus the live rows at or above ``rows_from``. Several db writers applying
events in any order, and redeliveries, end in the same account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from execflow.domain.codec import position_to_dict, reservation_to_dict
from execflow.domain.editmemo import find
from execflow.domain.models import Account, Position, Reservation
from execflow.domain.positionbook import book_of
from execflow.domain.reservationbook import total_of

__all__ = [
    "ACCOUNT_CHANGES",
    "KINDS",
    "AccountFold",
    "AccountRow",
    "RowKind",
    "account_changes",
    "assemble",
    "header_of",
    "is_snapshot",
    "rows_of_changes",
    "rows_of_snapshot",
]

ACCOUNT_CHANGES = "account_changes"
"""DB event payload key: what the transition changed in positions and reservations."""

RowKind = Literal["positions", "reservations"]
KINDS: tuple[RowKind, RowKind] = ("positions", "reservations")
"""The row kinds, named as the account document's lists."""


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One position or reservation of an account at the account version that set it.

    ``live``: the position is open, the reservation held; a row that is not live records
    the removal (``data`` is then ``None``), so an older upsert arriving later loses.
    """

    account_id: str
    kind: RowKind
    order_id: str
    version: int
    live: bool
    data: Mapping[str, Any] | None = None


def _by_order(items: Sequence[Position] | Sequence[Reservation], order_id: str) -> Any:
    if isinstance(items, tuple) and (book_of(items) or total_of(items)):  # sorted, unique
        at, there = find(items, order_id)
        return items[at] if there else None
    for item in items:
        if item.order_id == order_id:
            return item
    return None


def account_changes(before: Account, after: Account, order_ids: Iterable[str]) -> dict[str, Any]:
    """What changed in positions and reservations, for the orders a transition touched.

    A transition only ever opens, closes, reserves for or releases its own order
    (``domain.accounting`` takes the order id), so its changes are found by looking up
    those ids, not by comparing the whole lists. Empty when nothing changed.
    """
    changes: dict[str, Any] = {}
    for kind in KINDS:
        upsert: list[dict[str, Any]] = []
        remove: list[str] = []
        old_items = before.positions if kind == "positions" else before.reservations
        new_items = after.positions if kind == "positions" else after.reservations
        if old_items is new_items:
            continue
        for order_id in order_ids:
            old = _by_order(old_items, order_id)
            new = _by_order(new_items, order_id)
            if new is not None and new != old:
                upsert.append(
                    position_to_dict(new) if kind == "positions" else reservation_to_dict(new)
                )
            elif new is None and old is not None:
                remove.append(order_id)
        lists: dict[str, Any] = {}
        if upsert:
            lists["upsert"] = upsert
        if remove:
            lists["remove"] = remove
        if lists:
            changes[kind] = lists
    return changes


def header_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The account document without its positions and reservations."""
    return {k: v for k, v in doc.items() if k not in KINDS}


def is_snapshot(doc: Mapping[str, Any]) -> bool:
    """True for a whole-account document (positions and reservations included)."""
    return any(kind in doc for kind in KINDS)


def _version(doc: Mapping[str, Any]) -> int:
    value = doc.get("version", 0)
    return value if type(value) is int else 0


def rows_of_changes(
    account_id: str, version: int, changes: Mapping[str, Any] | None
) -> list[AccountRow]:
    """The rows an event's ``account_changes`` sets, at the account version after it."""
    rows: list[AccountRow] = []
    if not isinstance(changes, Mapping):
        return rows
    for kind in KINDS:
        lists = changes.get(kind)
        if not isinstance(lists, Mapping):
            continue
        for item in lists.get("upsert") or ():
            rows.append(AccountRow(account_id, kind, str(item["order_id"]), version, True, item))
        for order_id in lists.get("remove") or ():
            rows.append(AccountRow(account_id, kind, str(order_id), version, False))
    return rows


def rows_of_snapshot(account_id: str, doc: Mapping[str, Any]) -> list[AccountRow]:
    """The live rows of a whole-account document, at its version."""
    version = _version(doc)
    return [
        AccountRow(account_id, kind, str(item["order_id"]), version, True, item)
        for kind in KINDS
        for item in doc.get(kind) or ()
    ]


def assemble(
    header: Mapping[str, Any], rows: Iterable[AccountRow], rows_from: int
) -> dict[str, Any]:
    """The whole account document: the header plus the live rows at or above ``rows_from``."""
    lists: dict[str, list[tuple[str, Mapping[str, Any]]]] = {kind: [] for kind in KINDS}
    for row in rows:
        if row.live and row.version >= rows_from and row.data is not None:
            lists[row.kind].append((row.order_id, row.data))
    doc = header_of(header)
    version = doc.pop("version", None)
    for kind in KINDS:
        doc[kind] = [dict(data) for _, data in sorted(lists[kind], key=lambda pair: pair[0])]
    if version is not None:  # last, where the codec puts it
        doc["version"] = version
    return doc


@dataclass(slots=True)
class AccountFold:
    """One account folded from headers, rows and snapshots, in any order (module docstring)."""

    account_id: str
    header: dict[str, Any] | None = None
    version: int = -1
    rows_from: int = 0
    rows: dict[tuple[RowKind, str], AccountRow] = field(default_factory=dict)

    def add_header(self, header: Mapping[str, Any], version: int) -> None:
        """Keep the header if it is the newest seen."""
        if version > self.version:
            self.version = version
            self.header = header_of(header)

    def add_row(self, row: AccountRow) -> None:
        """Keep the row if it is the newest seen for its order."""
        key = (row.kind, row.order_id)
        known = self.rows.get(key)
        if known is None or row.version > known.version:
            self.rows[key] = row

    def add_rows(self, rows: Iterable[AccountRow], rows_from: int = 0) -> None:
        """Rows as a database keeps them, with its ``rows_from``."""
        self.rows_from = max(self.rows_from, rows_from)
        for row in rows:
            self.add_row(row)

    def add_snapshot(self, doc: Mapping[str, Any]) -> None:
        """A whole-account document: every row older than its version is superseded."""
        version = _version(doc)
        self.add_header(doc, version)
        self.add_rows(rows_of_snapshot(self.account_id, doc), version)

    def add_payload(self, account: Mapping[str, Any], changes: Mapping[str, Any] | None) -> None:
        """A DB event's ``account`` and ``account_changes``, of either shape."""
        if is_snapshot(account):
            self.add_snapshot(account)
            return
        version = _version(account)
        self.add_header(account, version)
        for row in rows_of_changes(self.account_id, version, changes):
            self.add_row(row)

    def document(self) -> dict[str, Any] | None:
        """The whole account document, or ``None`` when no header was seen."""
        if self.header is None:
            return None
        return assemble(
            {**self.header, "version": self.version}, self.rows.values(), self.rows_from
        )
