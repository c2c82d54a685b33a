"""The state store port: versioned JSON documents with an atomic multi-write commit.

Orders and accounts are stored as ``Versioned`` documents. A worker reads an order and
its account, computes the new state in pure Python, and writes both back with
``commit``: every write carries the version it read, and the whole commit is applied
only if every version still matches. The exec_id ledger and the effects outbox live
inside the documents' ``data``, so they are written atomically with the state.

Implementations: ``InMemoryStateStore``, ``RedisStateStore`` and ``RedisClusterStateStore``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "DocKind",
    "ReplicatedStore",
    "StateStore",
    "TransitionReads",
    "Versioned",
    "Write",
    "check_writes",
]

DocKind = Literal["order", "account"]


@dataclass(frozen=True, slots=True)
class Versioned:
    """A document and its version (1 for the first write, +1 each commit)."""

    version: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransitionReads:
    """What a worker's transition reads first: its order, its account, every latest quote."""

    order: Versioned | None
    account: Versioned | None
    prices: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Write:
    """One document write inside a ``commit``.

    ``key`` is the order id (``kind="order"``) or the account id (``kind="account"``,
    which must equal the commit's account id). ``expected_version`` is the version read;
    0 means the document must not exist yet. On success it is stored as
    ``expected_version + 1``.
    """

    kind: DocKind
    key: str
    expected_version: int
    data: dict[str, Any]


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
        if (write.kind, write.key) in seen:
            raise ValueError(f"duplicate write of {write.kind} {write.key!r}")
        seen.add((write.kind, write.key))


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
        """The account document, or ``None``."""
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
        """``get_order``, ``get_account`` and ``get_prices`` together (one round trip on Redis).

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
        """Store (replace) an instrument config of a group."""
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
