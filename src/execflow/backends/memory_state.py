"""In-memory state store: the same versioned-document semantics as Redis, in one process.

Documents are stored as JSON bytes (orjson), as Redis stores them, so a value that
cannot go to Redis fails here too, and no caller can mutate a stored document. An account
kept as rows (``backends.state``) is its header's bytes, its stamp and one entry of bytes
per position, as in Redis's hash.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from execflow.backends.state import (
    StoredAccount,
    TransitionReads,
    Versioned,
    Write,
    check_writes,
    header_of,
    new_instruments_token,
    stored_account,
)
from execflow.errors import StoreError, VersionConflict

__all__ = ["InMemoryStateStore"]


def _dump(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise StoreError("document is not JSON-serialisable", error=str(exc)) from exc


def _load(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(raw)
    return value


@dataclass(slots=True)
class _Account:
    """One stored account: its version, header (or whole document), stamp and rows."""

    version: int
    header: bytes
    stamp: str | None = None
    rows: dict[str, bytes] = field(default_factory=dict)


def _encoded(layout: StoredAccount) -> tuple[bytes, dict[str, bytes]]:
    return _dump(layout.header), {key: _dump(row) for key, row in layout.put.items()}


class InMemoryStateStore:
    """The ``StateStore`` port in one process (single event loop, so no locks needed)."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._orders: dict[str, dict[str, tuple[int, bytes]]] = {}
        self._lifecycles: dict[str, bytes] = {}
        self._instruments: dict[tuple[str, str], bytes] = {}
        self._prices: dict[str, bytes] = {}
        self._instruments_token: str | None = None

    async def connect(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    async def ping(self) -> None:
        """Always answers."""

    async def get_account(self, account_id: str) -> Versioned | None:
        """The whole account document (rows assembled, in key order), or ``None``."""
        found = self._accounts.get(account_id)
        if found is None:
            return None
        data = _load(found.header)
        if found.stamp is not None:
            data["positions"] = [_load(found.rows[key]) for key in sorted(found.rows)]
        return Versioned(found.version, data, found.stamp)

    async def get_account_head(self, account_id: str) -> Versioned | None:
        """The header and stamp (the whole document when not kept as rows), or ``None``.

        A subclass that wraps ``get_account`` (a test double failing or interleaving
        account reads) has the head read through it, so it sees every account read, as it
        did before heads existed; this store itself reads the header only.
        """
        if type(self).get_account is not InMemoryStateStore.get_account:
            whole = await self.get_account(account_id)
            if whole is None or whole.stamp is None:
                return whole
            return Versioned(whole.version, header_of(whole.data), whole.stamp)
        found = self._accounts.get(account_id)
        return None if found is None else Versioned(found.version, _load(found.header), found.stamp)

    async def get_order(self, account_id: str, order_id: str) -> Versioned | None:
        """The order document, or ``None``."""
        found = self._orders.get(account_id, {}).get(order_id)
        return None if found is None else Versioned(found[0], _load(found[1]))

    async def list_orders(
        self, account_id: str, skip: Collection[str] = ()
    ) -> dict[str, Versioned]:
        """Every order of an account but those in ``skip``."""
        orders = self._orders.get(account_id, {})
        return {
            oid: Versioned(v, _load(raw))
            for oid, (v, raw) in sorted(orders.items())
            if oid not in skip
        }

    async def read_for_transition(self, account_id: str, order_id: str) -> TransitionReads:
        """The order, its account's head, every quote (through the single reads, so a
        store that wraps those, as the fault tests do, sees these reads too) and the
        instrument configs' token."""
        order = await self.get_order(account_id, order_id)
        account = await self.get_account_head(account_id)
        prices = await self.get_prices()
        return TransitionReads(order, account, prices, self._instruments_token)

    async def list_accounts(self) -> list[str]:
        """Every account id, sorted."""
        return sorted(self._accounts)

    async def commit(self, account_id: str, writes: Sequence[Write]) -> None:
        """Check every version, then apply every write (no await in between: atomic)."""
        check_writes(account_id, writes)
        orders = self._orders.get(account_id, {})
        encoded = [(w, _dump(w.data)) for w in writes if w.kind == "order"]
        layouts = [stored_account(w) for w in writes if w.kind == "account"]
        account = [(layout, *_encoded(layout)) for layout in layouts]
        for write in writes:
            if write.kind == "account":
                stored = self._accounts.get(account_id)
                version = 0 if stored is None else stored.version
            else:
                current = orders.get(write.key)
                version = 0 if current is None else current[0]
            if version != write.expected_version:
                raise VersionConflict(
                    f"{write.kind} changed meanwhile",
                    kind=write.kind,
                    key=write.key,
                    expected_version=write.expected_version,
                    actual_version=version,
                )
        for layout, _, _ in account:
            if layout.mode != "delta":
                continue
            stored = self._accounts.get(account_id)
            if stored is None or stored.stamp is None:
                raise StoreError("account is not kept as rows", account_id=account_id)
            if layout.read_stamp is not None and stored.stamp != layout.read_stamp:
                raise VersionConflict(
                    "account rows changed meanwhile",
                    kind="account",
                    key=account_id,
                    expected_version=stored.version,
                    actual_version=stored.version,
                )
        for write, raw in encoded:
            self._orders.setdefault(account_id, {})[write.key] = (write.expected_version + 1, raw)
        for layout, header, rows in account:
            self._store_account(account_id, layout, header, rows)

    def _store_account(
        self, account_id: str, layout: StoredAccount, header: bytes, rows: dict[str, bytes]
    ) -> None:
        stored = self._accounts.get(account_id)
        version = 1 if stored is None else stored.version + 1
        if layout.mode == "whole":
            self._accounts[account_id] = _Account(version, header)
        elif layout.mode == "rows":
            self._accounts[account_id] = _Account(version, header, layout.stamp, rows)
        else:
            assert stored is not None and stored.stamp is not None  # checked before any write
            for key in layout.removed:
                stored.rows.pop(key, None)
            stored.rows.update(rows)
            stored.version, stored.header = version, header
            if layout.stamp is not None:
                stored.stamp = layout.stamp

    async def put_lifecycle(self, lifecycle_id: str, data: dict[str, Any]) -> bool:
        """Record if absent."""
        if lifecycle_id in self._lifecycles:
            return False
        self._lifecycles[lifecycle_id] = _dump(data)
        return True

    async def get_lifecycle(self, lifecycle_id: str) -> dict[str, Any] | None:
        """The lifecycle record, or ``None``."""
        raw = self._lifecycles.get(lifecycle_id)
        return None if raw is None else _load(raw)

    async def put_instrument(self, group: str, symbol: str, data: dict[str, Any]) -> None:
        """Store an instrument config, then a new instrument configs' token."""
        self._instruments[(group, symbol)] = _dump(data)
        self._instruments_token = new_instruments_token()

    async def get_instrument(self, group: str, symbol: str) -> dict[str, Any] | None:
        """An instrument config, or ``None``."""
        raw = self._instruments.get((group, symbol))
        return None if raw is None else _load(raw)

    async def put_price(self, symbol: str, data: dict[str, Any]) -> None:
        """Store the latest quote."""
        self._prices[symbol] = _dump(data)

    async def get_price(self, symbol: str) -> dict[str, Any] | None:
        """The latest quote, or ``None``."""
        raw = self._prices.get(symbol)
        return None if raw is None else _load(raw)

    async def get_prices(self) -> dict[str, dict[str, Any]]:
        """Every latest quote."""
        return {symbol: _load(raw) for symbol, raw in self._prices.items()}

    async def flush_all(self) -> None:
        """Forget everything."""
        self._accounts.clear()
        self._orders.clear()
        self._lifecycles.clear()
        self._instruments.clear()
        self._instruments_token = None
        self._prices.clear()
