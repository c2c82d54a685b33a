"""Rebuild the state store from the database (DESIGN §6): the database is the durable record.

What comes back, per account, in one atomic commit (account and its orders):

* orders: the newest snapshot of each order, from the ``orders`` table or any event
  payload, whichever has the higher version (the db writer inserts events before it
  upserts snapshots, so an event may be newer than its snapshot after a crash);
* accounts: the database's header and position and reservation rows, with every event's
  header and changes folded on (``domain.account_rows``: newest version per row wins,
  events of either payload shape), so events newer than the rows count too;
* exec_id ledgers: inside the order snapshots, plus every exec_id an event of the order
  recorded (an event exists only for an applied report);
* outboxes: the effects of each order's last ``OUTBOX_SIZE`` reports (each DB event and
  the follow-up LP requests its payload recorded), so a report redelivered after the
  rebuild re-publishes them (idempotent downstream);
* the lifecycle index: every request an event recorded explicitly (``payload.lifecycle``),
  then every lifecycle id found on any order snapshot (legs, placement, close);
* instruments and prices missing from the store: from ``settings.seed_file``, if set.

Lifecycles are restored first, and the store's marker (``STATE_MARKER``) last: a process
that finds the marker knows the store is complete (``rebuild_after_outage``).

Only what is missing is written, so a rebuild is safe to run while another process
rebuilds too, or on a partially filled store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from execflow.backends.database import Database, StoredEvent
from execflow.backends.state import StateStore, Write
from execflow.clock import Clock, SystemClock
from execflow.domain.account_rows import ACCOUNT_CHANGES, AccountFold
from execflow.domain.codec import (
    CodecError,
    account_from_dict,
    instrument_to_dict,
    lifecycle_from_dict,
    lifecycle_to_dict,
    order_from_dict,
    order_to_dict,
    request_from_dict,
)
from execflow.domain.effects import DbEvent, Effect, EventKind, LpRequest, OutboxEntry
from execflow.domain.enums import OrderType, RequestKind
from execflow.domain.models import LifecycleRecord, Order
from execflow.domain.transitions import FOLLOW_UPS, OUTBOX_SIZE
from execflow.errors import VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.completeness import REBUILD_CLAIM, STATE_MARKER, mark_complete
from execflow.pipeline.seed import quote_to_dict, read_seed

__all__ = [
    "REBUILD_CLAIM",
    "STATE_MARKER",
    "Fence",
    "RebuildReport",
    "needs_rebuild",
    "rebuild_after_outage",
    "rebuild_if_needed",
    "rebuild_state",
]

Fence = Callable[[], Awaitable[None]]
"""Returns once every DB event published before the call is in the database."""

_PEER_POLL_S = 0.1
_RESTORE_ATTEMPTS = 5


@dataclass(slots=True)
class RebuildReport:
    """What a rebuild wrote (and what it found already there)."""

    accounts: int = 0
    orders: int = 0
    lifecycles: int = 0
    exec_ids: int = 0
    outbox_entries: int = 0
    instruments: int = 0
    prices: int = 0
    events_read: int = 0
    accounts_present: int = 0
    skipped_events: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, int]:
        """The counts as log fields."""
        return {
            "accounts": self.accounts,
            "orders": self.orders,
            "lifecycles": self.lifecycles,
            "exec_ids": self.exec_ids,
            "outbox_entries": self.outbox_entries,
            "instruments": self.instruments,
            "prices": self.prices,
            "events_read": self.events_read,
            "accounts_present": self.accounts_present,
            "skipped_events": len(self.skipped_events),
        }


@dataclass(slots=True)
class _OrderHistory:
    account_id: str
    snapshot: dict[str, Any] | None = None
    version: int = -1
    exec_ids: list[str] = field(default_factory=list)
    # exec_id -> DB events of that report, in insertion order
    events: dict[str, list[DbEvent]] = field(default_factory=dict)
    lifecycle_ids: list[tuple[str, RequestKind]] = field(default_factory=list)


@dataclass(slots=True)
class _Collected:
    orders: dict[str, _OrderHistory] = field(default_factory=dict)
    accounts: dict[str, AccountFold] = field(default_factory=dict)
    explicit: dict[str, LifecycleRecord] = field(default_factory=dict)

    def account(self, account_id: str) -> AccountFold:
        fold = self.accounts.get(account_id)
        if fold is None:
            fold = self.accounts[account_id] = AccountFold(account_id)
        return fold

    def order(self, order_id: str, account_id: str, data: Mapping[str, Any]) -> None:
        history = self.orders.setdefault(order_id, _OrderHistory(account_id))
        version = _version(data)
        if version > history.version:
            history.version = version
            history.snapshot = dict(data)
        history.lifecycle_ids.extend(_lifecycle_ids(data))


async def needs_rebuild(state: StateStore, database: Database) -> bool:
    """True when the state store holds no account but the database does."""
    if await state.list_accounts():
        return False
    return bool(await database.list_accounts())


async def rebuild_if_needed(
    state: StateStore, database: Database, seed_file: Path | None, log: EventLogger
) -> RebuildReport | None:
    """At start: rebuild when the state store is empty and the database is not."""
    if not await needs_rebuild(state, database):
        await mark_complete(state)
        return None
    log.warning("STATE:FALLBACK", reason="state_store_empty", source="database")
    return await rebuild_state(state, database, seed_file, log)


async def rebuild_after_outage(
    state: StateStore,
    database: Database,
    seed_file: Path | None,
    log: EventLogger,
    peer_wait_s: float = 60.0,
    *,
    fence: Fence | None = None,
    clock: Clock | None = None,
) -> RebuildReport | None:
    """After the store failed: rebuild unless it kept its contents (its marker is there).

    A Redis restart without persistence loses the marker with everything else; other
    processes (the intake, a worker caching an account back) may write to the store
    before any rebuild finishes, so "the store holds no account" cannot tell. No process
    that saw the outage consumes again before the store is complete: the first to claim
    the rebuild does it (only what is missing is written) and writes the marker; the
    others wait for the marker (``STATE:REBUILT_BY_PEER``), or rebuild themselves after
    ``peer_wait_s``.

    ``fence`` (``dbfence.wait_for_db_writer``) runs before the database is read: a DB event
    published before the loss but not yet written would otherwise be missing from the
    rebuilt state for good (its report was acknowledged), and the database would get it
    a moment later (docs/state-rebuild.md).
    """
    if await state.get_lifecycle(STATE_MARKER) is not None:
        return None
    if not await database.list_accounts():
        await mark_complete(state)
        return None
    # One process rebuilds (the first to claim it); the others wait for its marker rather
    # than all scanning the database at once, and rebuild themselves if it never comes.
    if not await state.put_lifecycle(REBUILD_CLAIM, {"marker": REBUILD_CLAIM}):
        clock = clock or SystemClock()
        deadline = clock.monotonic() + peer_wait_s
        while clock.monotonic() < deadline:
            await asyncio.sleep(_PEER_POLL_S)
            if await state.get_lifecycle(STATE_MARKER) is not None:
                log.info("STATE:REBUILT_BY_PEER", source="database")
                return None
        log.warning("STATE:FALLBACK", reason="peer_rebuild_timeout", source="database")
    else:
        log.warning("STATE:FALLBACK", reason="state_store_reset", source="database")
    if fence is not None:
        await fence()
    return await rebuild_state(state, database, seed_file, log)


async def rebuild_state(
    state: StateStore, database: Database, seed_file: Path | None, log: EventLogger
) -> RebuildReport:
    """Write whatever the state store is missing from the database (module docstring)."""
    report = RebuildReport()
    collected = _Collected()
    for record in await database.list_accounts():
        fold = collected.account(record.account_id)
        fold.add_header(record.data, record.version)
        fold.add_rows(record.rows, record.rows_from)
    for snapshot in await database.list_orders():
        collected.order(snapshot.order_id, snapshot.account_id, snapshot.data)
    async for event in database.iter_events():
        report.events_read += 1
        _collect_event(collected, event, report)
    by_account: dict[str, list[tuple[str, _OrderHistory]]] = {}
    for order_id, history in collected.orders.items():
        by_account.setdefault(history.account_id, []).append((order_id, history))
    # Lifecycles first: another process that sees an account restored goes back to work,
    # and its dispatcher must then find every lifecycle id (not dead-letter it as unknown).
    await _restore_lifecycles(state, collected, report)
    for account_id in sorted(set(collected.accounts) | set(by_account)):
        await _restore_account(state, collected, account_id, by_account.get(account_id, []), report)
    if seed_file is not None:
        await _restore_reference(state, seed_file, report)
    for event_id in report.skipped_events:
        log.warning("STATE:SKIPPED_EVENT", event_id=event_id)
    await mark_complete(state)
    log.info("STATE:REBUILT", source="database", **report.fields())
    return report


def _collect_event(collected: _Collected, event: StoredEvent, report: RebuildReport) -> None:
    payload = event.payload
    try:
        kind = EventKind(event.kind)
    except ValueError:
        report.skipped_events.append(event.event_id)
        return
    order = payload.get("order")
    if isinstance(order, Mapping):
        collected.order(event.order_id, event.account_id, order)
    account = payload.get("account")
    if isinstance(account, Mapping):
        changes = payload.get(ACCOUNT_CHANGES)
        collected.account(event.account_id).add_payload(
            account, changes if isinstance(changes, Mapping) else None
        )
    lifecycle = payload.get("lifecycle")
    if isinstance(lifecycle, Mapping):
        try:
            record = lifecycle_from_dict(lifecycle)
        except CodecError:
            report.skipped_events.append(event.event_id)
        else:
            collected.explicit.setdefault(record.lifecycle_id, record)
    history = collected.orders.setdefault(event.order_id, _OrderHistory(event.account_id))
    if event.exec_id:
        if event.exec_id not in history.exec_ids:
            history.exec_ids.append(event.exec_id)
        db_event = DbEvent(
            event.event_id, kind, event.account_id, event.order_id, event.exec_id, payload
        )
        history.events.setdefault(event.exec_id, []).append(db_event)


async def _restore_account(
    state: StateStore,
    collected: _Collected,
    account_id: str,
    orders: list[tuple[str, _OrderHistory]],
    report: RebuildReport,
) -> None:
    for _attempt in range(_RESTORE_ATTEMPTS):
        try:
            await _restore_account_once(state, collected, account_id, orders, report)
            return
        except VersionConflict:
            # Another process wrote this account meanwhile (a worker caching it back from
            # the database, or another rebuild): look again and restore what is still missing.
            continue


async def _restore_account_once(
    state: StateStore,
    collected: _Collected,
    account_id: str,
    orders: list[tuple[str, _OrderHistory]],
    report: RebuildReport,
) -> None:
    writes: list[Write] = []
    if await state.get_account(account_id) is None:
        fold = collected.accounts.get(account_id)
        known = None if fold is None else fold.document()
        if known is not None:
            account_from_dict(known)  # validate before writing
            writes.append(Write("account", account_id, 0, known))
    else:
        report.accounts_present += 1
    present = await state.list_orders(account_id)
    restored = 0
    for order_id, history in orders:
        if order_id in present or history.snapshot is None:
            continue
        order = _with_ledger(order_from_dict(history.snapshot), history, report)
        writes.append(Write("order", order_id, 0, order_to_dict(order)))
        report.exec_ids += len(order.applied_exec_ids)
        report.outbox_entries += len(order.outbox)
        restored += 1
    if not writes:
        return
    await state.commit(account_id, writes)
    report.accounts += sum(1 for w in writes if w.kind == "account")
    report.orders += restored


def _with_ledger(order: Order, history: _OrderHistory, report: RebuildReport) -> Order:
    ledger = list(order.applied_exec_ids)
    ledger.extend(e for e in history.exec_ids if e not in ledger)
    recent = [e for e in ledger if e in history.events][-OUTBOX_SIZE:]
    outbox = tuple(OutboxEntry(e, _effects(history.events[e], report)) for e in recent)
    return replace(order, applied_exec_ids=tuple(ledger), outbox=outbox)


def _effects(events: list[DbEvent], report: RebuildReport) -> tuple[Effect, ...]:
    """A report's effects as its transition recorded them: each DB event, then its requests.

    A follow-up request whose first send was lost with the store goes out again when the
    report is redelivered (its lifecycle id makes a second send harmless at the LP). One
    that does not decode is left out (``STATE:SKIPPED_EVENT``), not the whole rebuild.
    """
    effects: list[Effect] = []
    for event in events:
        effects.append(event)
        for data in event.payload.get(FOLLOW_UPS) or ():
            try:
                effects.append(LpRequest(request_from_dict(data)))
            except CodecError:
                report.skipped_events.append(event.event_id)
    return tuple(effects)


async def _restore_lifecycles(
    state: StateStore, collected: _Collected, report: RebuildReport
) -> None:
    records = dict(collected.explicit)
    for order_id, history in collected.orders.items():
        for lifecycle_id, kind in history.lifecycle_ids:
            records.setdefault(
                lifecycle_id, LifecycleRecord(lifecycle_id, history.account_id, order_id, kind)
            )
    for lifecycle_id, record in records.items():
        if await state.put_lifecycle(lifecycle_id, lifecycle_to_dict(record)):
            report.lifecycles += 1


async def _restore_reference(state: StateStore, seed_file: Path, report: RebuildReport) -> None:
    seed = await read_seed(seed_file)
    for instrument in seed.instruments:
        if await state.get_instrument(instrument.group, instrument.symbol) is None:
            await state.put_instrument(
                instrument.group, instrument.symbol, instrument_to_dict(instrument)
            )
            report.instruments += 1
    known = await state.get_prices()
    for quote in seed.quotes:
        if quote.symbol not in known:
            await state.put_price(quote.symbol, quote_to_dict(quote))
            report.prices += 1


def _version(data: Mapping[str, Any]) -> int:
    value = data.get("version", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _lifecycle_ids(data: Mapping[str, Any]) -> Iterator[tuple[str, RequestKind]]:
    """Lifecycle ids on an order snapshot, most specific kinds first."""
    for leg_key, place, cancel in (
        ("sl", RequestKind.PLACE_SL, RequestKind.CANCEL_SL),
        ("tp", RequestKind.PLACE_TP, RequestKind.CANCEL_TP),
    ):
        leg = data.get(leg_key)
        if isinstance(leg, Mapping):
            if isinstance(leg.get("lifecycle_id"), str):
                yield leg["lifecycle_id"], place
            if isinstance(leg.get("cancel_lifecycle_id"), str):
                yield leg["cancel_lifecycle_id"], cancel
    first = data.get("lifecycle_id")
    if isinstance(first, str):
        market = data.get("order_type") == OrderType.MARKET.value
        yield first, RequestKind.OPEN if market else RequestKind.PLACE_PENDING
    close = data.get("close_lifecycle_id")
    if isinstance(close, str):
        yield close, RequestKind.CLOSE
