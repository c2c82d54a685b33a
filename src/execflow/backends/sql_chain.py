"""Appending events to their accounts' audit chains, inside the transaction that inserts them.

Per batch, three statements: create-or-lock every head row of the batch's accounts and
read it back (one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in account order:
on PostgreSQL the conflict update takes the row lock, on SQLite the first write takes
the one database write lock), give the events the next positions after each head (each
account's events of the batch sorted by ``chain_order_key``), hash the links, insert, and
move the heads. A redelivered event must not fork the chain: the insert skips known
event ids, and when it skipped any (rare: a redelivery) the caller rolls the transaction
back and appends again with ``lookup=True``, which drops the stored events first. A
second db writer appending to the same account waits for the head lock, then sees these
events and the new head: the chain is one line whatever the number of writers.
docs/audit.md says why the chain is in append order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from execflow.backends.database import EventRecord
from execflow.backends.sql_tables import JsonText, chain_heads, order_events
from execflow.domain.audit import GENESIS, canonical_json, chain_order_key, event_bytes, link
from execflow.errors import DatabaseError

__all__ = ["AlreadyStored", "PreparedEvent", "append_chained", "prepare_events"]

_LINKS_PER_SLICE = 16  # events hashed between two yields to the event loop
_LOOKUP_CHUNK = 1000  # event ids per "already stored?" query (SQLite bounds parameters)


class AlreadyStored(Exception):  # a signal to the caller, not an error
    """An append without lookup met stored events: roll back, append again with lookup."""


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event ready to chain: its time fixed and its payload's canonical bytes computed."""

    record: EventRecord
    created_at: datetime
    payload_json: bytes
    key: tuple[int, str, int, str]


def prepare_events(events: Sequence[EventRecord], now: datetime) -> list[PreparedEvent]:
    """Distinct events (first of each id), with what hashing needs that costs CPU.

    Done before the transaction, so the head locks are held for the hashing only.
    Raises ``AuditError`` for a payload with no canonical JSON form.
    """
    prepared: dict[str, PreparedEvent] = {}
    for event in events:
        if event.event_id in prepared:
            continue
        prepared[event.event_id] = PreparedEvent(
            record=event,
            created_at=_utc(event.created_at or now),
            payload_json=(
                canonical_json(event.payload) if event.payload_json is None else event.payload_json
            ),
            key=chain_order_key(event.event_id, event.order_id, event.payload),
        )
    return list(prepared.values())


async def append_chained(
    conn: AsyncConnection,
    insert: Any,
    events: Sequence[PreparedEvent],
    now: datetime,
    *,
    lookup: bool = True,
) -> int:
    """Insert the events not stored yet, each linked into its account's chain; how many.

    ``lookup=False`` saves the "already stored?" query, the common case being a batch of
    new events; it raises ``AlreadyStored`` when the insert skipped any, and the caller
    must then roll the transaction back (the positions given would leave gaps) and call
    again with ``lookup=True``.
    """
    if not events:
        return 0
    accounts = sorted({e.record.account_id for e in events})
    heads = await _lock_heads(conn, accounts, now)
    new = await _not_stored(conn, events) if lookup else list(events)
    if not new:
        return 0
    by_account: dict[str, list[PreparedEvent]] = {}
    for event in new:
        by_account.setdefault(event.record.account_id, []).append(event)
    rows: dict[str, dict[str, Any]] = {}
    moved: list[dict[str, Any]] = []
    for account_id, mine in sorted(by_account.items()):
        length, head_hash = heads[account_id]
        for event in sorted(mine, key=_key):
            length += 1
            head_hash = link(head_hash, _bytes(event, length))
            rows[event.record.event_id] = _row(event, length, head_hash)
            if len(rows) % _LINKS_PER_SLICE == 0:
                # Hashing a batch is ~10 us an event: in slices, so an embedded worker
                # sharing this event loop waits for one slice, not the batch (its p99).
                await asyncio.sleep(0)
        moved.append(
            {"k_account": account_id, "k_length": length, "k_hash": head_hash, "k_at": now}
        )
    # Rows go in in arrival order (``seq``, the rebuild's order); positions are per account.
    result = await conn.execute(insert, [rows[e.record.event_id] for e in new])
    inserted = len(result.fetchall())
    if inserted != len(new) and not lookup:
        raise AlreadyStored
    if inserted != len(new):
        # Only a writer that skips the head lock (an older execflow) can get here: the
        # transaction rolls back rather than leave positions that do not follow.
        raise DatabaseError(
            "events appeared while their account's chain head was locked",
            expected=len(new),
            inserted=inserted,
        )
    await conn.execute(_MOVE_HEAD, moved)
    return inserted


_MOVE_HEAD = (
    sa.update(chain_heads)
    .where(chain_heads.c.account_id == sa.bindparam("k_account"))
    .values(
        length=sa.bindparam("k_length"),
        head_hash=sa.bindparam("k_hash"),
        updated_at=sa.bindparam("k_at"),
    )
)


def _utc(when: datetime) -> datetime:
    """UTC always: SQLite keeps the wall time only, and the hash covers the time."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _key(event: PreparedEvent) -> tuple[int, str, int, str]:
    return event.key


async def _lock_heads(
    conn: AsyncConnection, accounts: list[str], now: datetime
) -> dict[str, tuple[int, str]]:
    """(length, head hash) per account, each head row created if new and locked."""
    statement = _LOCK_HEADS[conn.dialect.name == "postgresql"]
    # Sorted: two writers create and lock overlapping heads in one order, never crosswise.
    fresh = [
        {"account_id": a, "length": 0, "head_hash": GENESIS, "updated_at": now} for a in accounts
    ]
    result = await conn.execute(statement, fresh)
    heads = {r.account_id: (int(r.length), r.head_hash) for r in result}
    if len(heads) != len(accounts):
        raise DatabaseError("chain heads missing after upsert", accounts=len(accounts))
    return heads


def _lock_heads_statement(insert: Any) -> Any:
    """Insert a head, or touch the existing one (``length = length``: the update takes
    its row lock), and return the head as it stands either way. A no-op update rather
    than ``DO NOTHING``, which returns nothing for an existing row and locks nothing."""
    return (
        insert.on_conflict_do_update(
            index_elements=["account_id"], set_={"length": chain_heads.c.length}
        )
        .returning(chain_heads.c.account_id, chain_heads.c.length, chain_heads.c.head_hash)
        .execution_options(insertmanyvalues_page_size=_LOOKUP_CHUNK)
    )


# Indexed by "is PostgreSQL": built once, so SQLAlchemy's compiled cache keeps hitting.
_LOCK_HEADS = (
    _lock_heads_statement(sqlite.insert(chain_heads)),
    _lock_heads_statement(postgresql.insert(chain_heads)),
)


async def _not_stored(
    conn: AsyncConnection, events: Sequence[PreparedEvent]
) -> list[PreparedEvent]:
    ids = [e.record.event_id for e in events]
    known: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        found = await conn.execute(
            sa.select(order_events.c.event_id).where(order_events.c.event_id.in_(chunk))
        )
        known.update(found.scalars())
    return [e for e in events if e.record.event_id not in known]


def _bytes(event: PreparedEvent, position: int) -> bytes:
    record = event.record
    return event_bytes(
        account_id=record.account_id,
        chain_seq=position,
        created_at=event.created_at,
        event_id=record.event_id,
        exec_id=record.exec_id,
        kind=record.kind,
        order_id=record.order_id,
        payload_json=event.payload_json,
    )


def _row(event: PreparedEvent, position: int, chain_hash: str) -> dict[str, Any]:
    record = event.record
    return {
        "event_id": record.event_id,
        "order_id": record.order_id,
        "account_id": record.account_id,
        "exec_id": record.exec_id,
        "kind": record.kind,
        "payload": JsonText(event.payload_json.decode()),
        "created_at": event.created_at,
        "chain_seq": position,
        "chain_hash": chain_hash,
    }
