"""The database port: the durable record (events, order and account snapshots, dead letters).

``order_events`` is append-only and keyed by a unique ``event_id``, so re-inserting an
event is a no-op; ``seq`` gives the insertion order used to rebuild the state store.
Each event is a link of its account's audit chain (``chain_seq``, ``chain_hash``;
docs/audit.md), appended in the transaction that inserts it.
Snapshots are upserted only when the incoming version is newer than the stored one.
An account is kept as a header (``accounts``) and one row per position and reservation
(``account_positions``, ``account_reservations``), each at the account version that set
it, newest version winning row by row (``domain.account_rows``): DB events carry only
what changed, and several writers applying them in any order agree.

Implementation: ``SqlDatabase`` (SQLAlchemy 2 async Core; SQLite or PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from execflow.domain.account_rows import AccountRow
from execflow.domain.audit import ChainHead

__all__ = [
    "AccountRecord",
    "BatchCounts",
    "Database",
    "DeadLetterRecord",
    "EventRecord",
    "OrderRecord",
    "StoredDeadLetter",
    "StoredEvent",
]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One order event to append; ``event_id`` is the idempotency key."""

    event_id: str
    order_id: str
    account_id: str
    kind: str
    payload: dict[str, Any]
    exec_id: str | None = None
    created_at: datetime | None = None  # None: the database's insertion time
    payload_json: bytes | None = None
    """``canonical_json(payload)`` (docs/audit.md) when the caller has it already."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back, with its insertion sequence number."""

    seq: int
    event_id: str
    order_id: str
    account_id: str
    kind: str
    payload: dict[str, Any]
    exec_id: str | None
    created_at: datetime
    chain_seq: int | None = None
    """Position in the account's audit chain (1 = its first event)."""
    chain_hash: str | None = None
    """SHA-256 link of the audit chain, hex (docs/audit.md)."""


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """The latest snapshot of an order."""

    order_id: str
    account_id: str
    status: str
    version: int
    data: dict[str, Any]
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account: its header at ``version`` and its position and reservation rows.

    Written: ``data`` is the header, or a whole account document (its positions and
    reservations then become rows at ``version`` and ``rows_from`` rises to ``version``:
    older rows no longer count); ``rows`` are further rows to keep (an event's changes).
    Read back: ``data`` is the whole account document (header plus the live rows at or
    above ``rows_from``), ``rows`` every row at or above ``rows_from``, live or not, so a
    caller can fold newer events onto it (``domain.account_rows.AccountFold``).
    """

    account_id: str
    version: int
    data: dict[str, Any]
    updated_at: datetime | None = None
    rows: tuple[AccountRow, ...] = ()
    rows_from: int = 0


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What ``Database.write_batch`` changed: new events, newer orders, newer account headers."""

    inserted: int
    orders_upserted: int
    accounts_upserted: int


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A message taken from the DLQ, to keep for listing and replay."""

    queue: str
    reason: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as read back."""

    id: int
    queue: str
    reason: str
    error: str | None
    body: bytes
    headers: dict[str, str]
    attempts: int
    created_at: datetime
    replayed_at: datetime | None


class Database(Protocol):
    """Durable storage of what happened."""

    async def connect(self) -> None:
        """Open the pool and bring the schema to the latest version."""
        ...

    async def close(self) -> None:
        """Close the pool."""
        ...

    async def schema_version(self) -> str | None:
        """The applied schema revision."""
        ...

    async def insert_events(self, events: Sequence[EventRecord]) -> int:
        """Append events in batches; known event ids are skipped. Return how many were new."""
        ...

    def iter_events(self, after_seq: int = 0, batch_size: int = 1000) -> AsyncIterator[StoredEvent]:
        """Every event with ``seq > after_seq``, in insertion order, read in batches."""
        ...

    async def events_for_order(self, order_id: str) -> list[StoredEvent]:
        """One order's events, in insertion order."""
        ...

    async def count_events(self) -> int:
        """How many events are stored."""
        ...

    async def chain_accounts(self) -> list[str]:
        """Every account with events or an audit chain head, sorted."""
        ...

    def iter_chain(
        self,
        account_id: str,
        after: int = 0,
        upto: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """One account's chained events at positions in (after, upto], by position."""
        ...

    async def first_unchained(self, account_id: str) -> StoredEvent | None:
        """The oldest event of the account that has no chain position or hash."""
        ...

    async def chain_head(self, account_id: str) -> ChainHead | None:
        """The account's recorded audit chain head, or ``None``."""
        ...

    async def upsert_orders(self, orders: Sequence[OrderRecord]) -> int:
        """Insert or replace snapshots whose version is newer; return how many changed."""
        ...

    async def upsert_accounts(self, accounts: Sequence[AccountRecord]) -> int:
        """Keep newer headers and rows (row by row, in one transaction); return how many
        account headers changed."""
        ...

    async def write_batch(
        self,
        events: Sequence[EventRecord],
        orders: Sequence[OrderRecord],
        accounts: Sequence[AccountRecord],
    ) -> BatchCounts:
        """``insert_events``, ``upsert_orders`` and ``upsert_accounts`` in one transaction."""
        ...

    async def get_order(self, order_id: str) -> OrderRecord | None:
        """One order snapshot, or ``None``."""
        ...

    async def list_orders(self, account_id: str | None = None) -> list[OrderRecord]:
        """Order snapshots (of one account, or all), by order id."""
        ...

    async def get_account(self, account_id: str) -> AccountRecord | None:
        """One account, assembled from its header and rows, or ``None``."""
        ...

    async def list_accounts(self) -> list[AccountRecord]:
        """Every account, assembled, by account id."""
        ...

    async def insert_dead_letter(self, record: DeadLetterRecord) -> int:
        """Keep a dead letter; return its id."""
        ...

    async def list_dead_letters(
        self, include_replayed: bool = False, limit: int = 100
    ) -> list[StoredDeadLetter]:
        """Dead letters, oldest first."""
        ...

    async def mark_replayed(self, dead_letter_id: int) -> bool:
        """Mark a dead letter replayed; ``False`` if unknown or already replayed."""
        ...
