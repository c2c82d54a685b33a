"""Reconciliation: recompute every account from the database's order events, compare with state.

The database is the durable record. Each order event carries the account's header after
the transition (events written before the header-and-changes payload: the whole account;
both have the money fields and the version) and the money deltas it caused
(``balance``, ``used_margin_executed``, ``used_margin_all``). From those alone this
module recomputes, per account: the balance and used margins (opening values plus the
sum of deltas), the open positions (orders whose latest snapshot is OPEN or CLOSING), and
the latest status and version of every order, then lists every field where the state
store says something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from execflow.backends.database import Database, StoredEvent
from execflow.backends.state import StateStore

__all__ = ["AccountFromEvents", "Difference", "ReconcileReport", "reconcile"]

_MONEY = ("balance", "used_margin_executed", "used_margin_all")
_POSITION_STATUSES = frozenset({"OPEN", "CLOSING"})


@dataclass(frozen=True, slots=True)
class Difference:
    """One disagreement: ``expected`` is what the events say, ``actual`` what the state says."""

    account_id: str
    what: str
    expected: str
    actual: str
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """The verdict: counts of what was compared and every difference found."""

    accounts: int
    orders: int
    events: int
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        """True when the state store agrees with the database on everything."""
        return not self.differences


@dataclass(slots=True)
class _Latest:
    version: int
    data: dict[str, Any]


@dataclass(slots=True)
class AccountFromEvents:
    """One account as recomputed from its events."""

    account_id: str
    opening: dict[str, Decimal] = field(default_factory=dict)
    deltas: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(_MONEY, Decimal(0)))
    earliest_before_version: int | None = None
    latest_account: _Latest | None = None
    orders: dict[str, _Latest] = field(default_factory=dict)
    events: int = 0

    def money(self) -> dict[str, Decimal]:
        """Opening values plus the sum of every delta."""
        return {k: self.opening.get(k, Decimal(0)) + self.deltas[k] for k in _MONEY}

    def open_positions(self) -> set[str]:
        """Orders whose latest snapshot holds a position."""
        return {oid for oid, o in self.orders.items() if o.data.get("status") in _POSITION_STATUSES}

    def add(self, event: StoredEvent) -> None:
        """Fold one event in (events may come in any order: sums and maxima only)."""
        self.events += 1
        payload = event.payload
        deltas = _decimals(payload.get("deltas") or {})
        for key in _MONEY:
            self.deltas[key] += deltas.get(key, Decimal(0))
        account = payload.get("account")
        if isinstance(account, Mapping):
            self._fold_account(dict(account), deltas)
        order = payload.get("order")
        if isinstance(order, Mapping):
            version = int(order.get("version", 0))
            known = self.orders.get(event.order_id)
            if known is None or version > known.version:
                self.orders[event.order_id] = _Latest(version, dict(order))

    def _fold_account(self, account: dict[str, Any], deltas: Mapping[str, Decimal]) -> None:
        version = int(account.get("version", 0))
        if self.latest_account is None or version > self.latest_account.version:
            self.latest_account = _Latest(version, account)
        # The opening values are "after minus delta" of the earliest change. A change bumps
        # the version, so its state before is version - 1; with all deltas zero the values
        # before and after are equal, so counting it as version stays correct.
        changed = any(v != 0 for v in deltas.values())
        before = version - 1 if changed else version
        if self.earliest_before_version is None or before < self.earliest_before_version:
            after = _decimals(account)
            self.earliest_before_version = before
            self.opening = {k: after.get(k, Decimal(0)) - deltas.get(k, Decimal(0)) for k in _MONEY}


def _decimals(values: Mapping[str, Any]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for key in _MONEY:
        raw = values.get(key)
        if raw is None or raw == "":
            continue
        try:
            out[key] = Decimal(str(raw))
        except InvalidOperation:
            continue
    return out


async def _from_events(database: Database) -> tuple[dict[str, AccountFromEvents], int]:
    accounts: dict[str, AccountFromEvents] = {}
    count = 0
    async for event in database.iter_events():
        count += 1
        found = accounts.get(event.account_id)
        if found is None:
            found = accounts[event.account_id] = AccountFromEvents(event.account_id)
        found.add(event)
    return accounts, count


async def reconcile(database: Database, state: StateStore) -> ReconcileReport:
    """Compare every account and order of the state store with the database's events."""
    recomputed, events = await _from_events(database)
    account_ids = sorted(set(recomputed) | set(await state.list_accounts()))
    diffs: list[Difference] = []
    orders_checked = 0
    for account_id in account_ids:
        expected = recomputed.get(account_id)
        stored = await state.get_account(account_id)
        state_orders = await state.list_orders(account_id)
        orders_checked += len(state_orders)
        if expected is None:
            diffs.extend(await _no_events(database, account_id, stored, state_orders))
            continue
        if stored is None:
            diffs.append(Difference(account_id, "account", "present", "missing"))
            continue
        diffs.extend(_compare_account(expected, stored.data, state_orders))
    return ReconcileReport(len(account_ids), orders_checked, events, tuple(diffs))


async def _no_events(
    database: Database, account_id: str, stored: Any, state_orders: Mapping[str, Any]
) -> list[Difference]:
    """An account nobody traded: no orders, no margin, balance as the database has it."""
    diffs = [
        Difference(account_id, "order without events", "absent", oid, oid) for oid in state_orders
    ]
    if stored is None:
        return diffs
    data = stored.data
    for key in ("used_margin_executed", "used_margin_all"):
        if Decimal(str(data.get(key, "0"))) != 0:
            diffs.append(Difference(account_id, key, "0", str(data.get(key))))
    record = await database.get_account(account_id)
    if record is not None and str(record.data.get("balance")) != str(data.get("balance")):
        diffs.append(
            Difference(account_id, "balance", str(record.data.get("balance")), str(data["balance"]))
        )
    return diffs


def _compare_account(
    expected: AccountFromEvents, account: Mapping[str, Any], state_orders: Mapping[str, Any]
) -> list[Difference]:
    account_id = expected.account_id
    diffs: list[Difference] = []
    actual_money = _decimals(account)
    for key, value in expected.money().items():
        got = actual_money.get(key)
        if got != value:
            diffs.append(Difference(account_id, key, str(value), str(got)))
    latest = expected.latest_account
    if latest is not None and latest.version != int(account.get("version", 0)):
        diffs.append(
            Difference(
                account_id, "account version", str(latest.version), str(account.get("version"))
            )
        )
    held = {str(p.get("order_id")) for p in account.get("positions") or ()}
    should = expected.open_positions()
    for oid in sorted(should - held):
        diffs.append(Difference(account_id, "open position", "open", "absent", oid))
    for oid in sorted(held - should):
        diffs.append(Difference(account_id, "open position", "absent", "open", oid))
    for oid in sorted(set(expected.orders) | set(state_orders)):
        diffs.extend(_compare_order(account_id, oid, expected.orders.get(oid), state_orders))
    return diffs


def _compare_order(
    account_id: str, order_id: str, latest: _Latest | None, state_orders: Mapping[str, Any]
) -> list[Difference]:
    doc = state_orders.get(order_id)
    if latest is None:
        return [Difference(account_id, "order without events", "absent", "present", order_id)]
    if doc is None:
        return [Difference(account_id, "order", "present", "missing", order_id)]
    data = doc.data
    diffs = []
    for key in ("status", "version", "net_profit", "margin"):
        want, got = latest.data.get(key), data.get(key)
        if str(want) != str(got):
            diffs.append(Difference(account_id, f"order {key}", str(want), str(got), order_id))
    return diffs
