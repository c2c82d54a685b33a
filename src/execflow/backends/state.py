"""The state store port: versioned JSON documents with an atomic multi-write commit.

Orders and accounts are stored as ``Versioned`` documents. A worker reads an order and
its account, computes the new state in pure Python, and writes both back with
``commit``: every write carries the version it read, and the whole commit is applied
only if every version still matches. The exec_id ledger and the effects outbox live
inside the documents' ``data``, so they are written atomically with the state.

An account whose document has a ``positions`` list (dicts with unique string
``order_id`` values, sorted by them, as ``codec.account_to_dict`` writes them) is kept as
a header (the document with ``"positions": []``) plus one row per position, keyed by its
order id, and a *stamp*: a token replaced on every change of the rows. ``get_account``
assembles the whole document; ``get_account_head`` and ``read_for_transition`` return the
header and the stamp only (``Versioned.stamp``), so a reader that keeps the positions it
decoded for that stamp (``pipeline.decoded``) reads a constant size however many positions
the account holds. A commit may then carry the header and only the rows that changed
(``Write.rows``). Any other account document (no ``positions``, or positions that are not
such rows) is kept whole, as stored before this layout; so is an account written by an
older release (no stamp): reads return it whole and its next whole write converts it.

Implementations: ``InMemoryStateStore``, ``RedisStateStore`` and ``RedisClusterStateStore``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from secrets import token_hex
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import uuid4

__all__ = [
    "ROW_KEY",
    "DocKind",
    "ReplicatedStore",
    "RowChanges",
    "StateStore",
    "StoredAccount",
    "TransitionReads",
    "Versioned",
    "Write",
    "check_writes",
    "header_of",
    "new_instruments_token",
    "new_stamp",
    "position_rows",
    "stored_account",
]

DocKind = Literal["order", "account"]


@dataclass(frozen=True, slots=True)
class Versioned:
    """A document and its version (1 for the first write, +1 each commit).

    ``stamp`` is set for an account kept as a header plus position rows: it changes
    whenever the rows do. Then ``get_account`` gives the whole document, and a head read
    (``get_account_head``, ``read_for_transition``) gives ``data`` with ``"positions": []``:
    its positions are the rows of that stamp, which the reader must already know (or read
    with ``get_account``). ``None``: ``data`` is the whole document.
    """

    version: int
    data: dict[str, Any]
    stamp: str | None = None


@dataclass(frozen=True, slots=True)
class TransitionReads:
    """What a worker's transition reads first: its order, its account, every latest quote."""

    order: Versioned | None
    account: Versioned | None
    """The account's head (``StateStore.get_account_head``): see ``Versioned.stamp``."""
    prices: dict[str, dict[str, Any]]
    instruments_token: str | None = None
    """The instrument configs' token (``new_instruments_token``), replaced by every
    ``put_instrument`` after the config is stored; ``None`` when the store has none (no
    config written since the store was empty: lost, flushed or never seeded). A reader
    may keep the configs it read after seeing a token for as long as the store answers
    that same token; with ``None`` it keeps none. A random token, not a counter: a store
    that lost its data and was seeded again, or restored from an older snapshot, never
    answers a token a reader saw before with other configs."""


def new_instruments_token() -> str:
    """A fresh instrument configs' token (``TransitionReads.instruments_token``)."""
    return uuid4().hex


ROW_KEY = "order_id"
"""The field of a position dict that keys its row."""


@dataclass(frozen=True, slots=True)
class RowChanges:
    """The position rows an account write changes: ``removed`` keys first, then ``put``.

    ``stamp`` (``new_stamp()``) is the rows' new stamp; ``None`` only when nothing
    changes (a header-only write keeps the stored stamp).

    ``read_stamp`` is the stamp the writer read the rows at. When given, the store refuses
    the write (``VersionConflict``, nothing written) unless the account's stamp is still
    that one: the version alone can meet another history of the same account (versions
    restart with a rebuild, and a failover can lose an under-replicated write that a later
    one numbers again), and a header must never be joined to rows it was not computed from.
    """

    put: Mapping[str, dict[str, Any]]
    removed: Sequence[str] = ()
    stamp: str | None = None
    read_stamp: str | None = None


_STAMPS = count(1)
_STAMP_PREFIX = [token_hex(8)]
"""Random per process (drawn again in a forked child): stamps are unique across processes
and restarts (versions are not: they restart when an account is written anew)."""

os.register_at_fork(after_in_child=lambda: _STAMP_PREFIX.__setitem__(0, token_hex(8)))


def new_stamp() -> str:
    """A fresh rows stamp: this process's random prefix and a counter."""
    return f"{_STAMP_PREFIX[0]}.{next(_STAMPS)}"


def header_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """An account document's header: the document with ``"positions": []``."""
    return {**document, "positions": []}


def position_rows(data: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A whole account document's positions as rows by order id, in order; ``None`` when
    the document is kept whole (no ``positions`` list, or positions that are not dicts
    with unique string order ids in ascending order)."""
    positions = data.get("positions")
    if not isinstance(positions, list):
        return None
    rows: dict[str, dict[str, Any]] = {}
    last = ""
    for item in positions:
        key = item.get(ROW_KEY) if isinstance(item, dict) else None
        if not isinstance(key, str) or (rows and key <= last):
            return None
        rows[key] = item
        last = key
    return rows


@dataclass(frozen=True, slots=True)
class Write:
    """One document write inside a ``commit``.

    ``key`` is the order id (``kind="order"``) or the account id (``kind="account"``,
    which must equal the commit's account id). ``expected_version`` is the version read;
    0 means the document must not exist yet. On success it is stored as
    ``expected_version + 1``.

    ``rows`` (accounts only): ``data`` is the header (``"positions": []``) and ``rows`` the
    position rows that changed, applied to the stored ones; the stored account must be kept
    as rows (its head had a stamp), else ``StoreError``. ``None``: ``data`` is the whole
    document, which replaces every row.
    """

    kind: DocKind
    key: str
    expected_version: int
    data: dict[str, Any]
    rows: RowChanges | None = None


def check_writes(account_id: str, writes: Sequence[Write]) -> None:
    """Reject a malformed commit (``ValueError``) before any backend touches it."""
    if not writes:
        raise ValueError("commit needs at least one write")
    seen: set[tuple[str, str]] = set()
    for write in writes:
        if write.kind not in ("order", "account"):
            raise ValueError(f"unknown document kind {write.kind!r}")
        if write.kind == "account" and write.key != account_id:
            raise ValueError(f"account write {write.key!r} outside commit of {account_id!r}")
        if write.expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {write.expected_version}")
        if write.rows is not None:
            _check_rows(write)
        if (write.kind, write.key) in seen:
            raise ValueError(f"duplicate write of {write.kind} {write.key!r}")
        seen.add((write.kind, write.key))


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """What a store writes for one account write (``stored_account``).

    ``mode``: ``"whole"`` stores ``header`` as the whole document and drops any rows and
    stamp; ``"rows"`` stores the header and replaces every row with ``put``; ``"delta"``
    stores the header, removes then puts rows (the stored account must have a stamp) and
    sets ``stamp`` unless it is ``None``.
    """

    mode: Literal["whole", "rows", "delta"]
    header: dict[str, Any]
    put: Mapping[str, dict[str, Any]]
    removed: Sequence[str]
    stamp: str | None
    read_stamp: str | None = None
    """For a delta: the stamp the stored account must still have (``RowChanges``)."""


def stored_account(write: Write) -> StoredAccount:
    """How a store keeps an account write (see the module docstring)."""
    if write.rows is not None:
        rows = write.rows
        return StoredAccount(
            "delta", write.data, rows.put, rows.removed, rows.stamp, rows.read_stamp
        )
    put = position_rows(write.data)
    if put is None:
        return StoredAccount("whole", write.data, {}, (), None)
    return StoredAccount("rows", header_of(write.data), put, (), new_stamp())


def _check_rows(write: Write) -> None:
    rows = write.rows
    assert rows is not None
    if write.kind != "account":
        raise ValueError(f"rows in a write of {write.kind} {write.key!r}")
    if write.data.get("positions") != []:
        raise ValueError("a write with rows carries the header: positions must be []")
    if (rows.put or rows.removed) and not rows.stamp:
        raise ValueError("changed rows need a new stamp")
    if rows.stamp is not None and not rows.stamp:
        raise ValueError("a stamp cannot be empty")
    if rows.read_stamp is not None and not rows.read_stamp:
        raise ValueError("a read stamp cannot be empty")
    for key, row in rows.put.items():
        if row.get(ROW_KEY) != key:
            raise ValueError(f"row {key!r} keyed by something else than its {ROW_KEY}")


class StateStore(Protocol):
    """Fast, rebuildable state: orders, accounts, lifecycle index, reference data."""

    async def connect(self) -> None:
        """Check the store answers; raise ``StoreError`` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` when the store does not answer."""
        ...

    async def get_account(self, account_id: str) -> Versioned | None:
        """The whole account document (its rows assembled, with their stamp), or ``None``."""
        ...

    async def get_account_head(self, account_id: str) -> Versioned | None:
        """The account's header and rows stamp (``Versioned.stamp``); the whole document
        when it is not kept as rows; ``None`` when absent."""
        ...

    async def get_order(self, account_id: str, order_id: str) -> Versioned | None:
        """The order document, or ``None``."""
        ...

    async def list_orders(
        self, account_id: str, skip: Collection[str] = ()
    ) -> dict[str, Versioned]:
        """Every order of an account, by order id; the ids in ``skip`` are not read at all.

        ``skip`` lets a periodic reader leave out documents it knows cannot have changed
        for it (the stuck-order watch skips final orders), so it costs what changed.
        """
        ...

    async def read_for_transition(self, account_id: str, order_id: str) -> TransitionReads:
        """``get_order``, ``get_account_head``, ``get_prices`` and the instrument configs'
        token together (one round trip on Redis).

        The three reads are not one snapshot; the commit's version check covers the
        order and the account as it does for separate reads.
        """
        ...

    async def list_accounts(self) -> list[str]:
        """Ids of every stored account, sorted."""
        ...

    async def commit(self, account_id: str, writes: Sequence[Write]) -> None:
        """Apply every write or none: ``VersionConflict`` when any version differs."""
        ...

    async def put_lifecycle(self, lifecycle_id: str, data: dict[str, Any]) -> bool:
        """Record a lifecycle id if absent; ``False`` when it already existed."""
        ...

    async def get_lifecycle(self, lifecycle_id: str) -> dict[str, Any] | None:
        """What a lifecycle id answers (account, order, kind), or ``None``."""
        ...

    async def put_instrument(self, group: str, symbol: str, data: dict[str, Any]) -> None:
        """Store (replace) an instrument config of a group, then replace the instrument
        configs' token (``TransitionReads.instruments_token``): a reader that sees the new
        token reads the new config."""
        ...

    async def get_instrument(self, group: str, symbol: str) -> dict[str, Any] | None:
        """An instrument config, or ``None``."""
        ...

    async def put_price(self, symbol: str, data: dict[str, Any]) -> None:
        """Store (replace) the latest quote of a symbol."""
        ...

    async def get_price(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote of a symbol, or ``None``."""
        ...

    async def get_prices(self) -> dict[str, dict[str, Any]]:
        """Every latest quote, by symbol."""
        ...

    async def flush_all(self) -> None:
        """Forget everything this store holds (its own keys only)."""
        ...


@runtime_checkable
class FailoverReads(Protocol):
    """A state store whose reads may come from a master replaced meanwhile (Redis Cluster).

    A master replaced while paused answers from its old data until it hears so. What is
    decided on such a read and then written is safe (the write is checked); a decision
    that writes nothing (a report dead-lettered as contradicting its order) asks first.
    """

    async def confirm_current(self, account_id: str, order_id: str) -> None:
        """Raise ``StoreError`` if the order's reads may have come from a replaced master."""
        ...


@runtime_checkable
class ReplicatedStore(Protocol):
    """A state store whose writes wait for replicas (Redis Cluster): what it saw of them.

    Only such a store has this; the process's metrics export it (``pipeline.services``).
    """

    under_replicated_writes: int
    """Writes acknowledged by fewer replicas than wanted (since the store was made)."""

    @property
    def replicas_by_node(self) -> Mapping[str, int]:
        """Each master's online replicas when last asked (``host:port``: count)."""
        ...
