"""The database contract, run against SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from execflow.backends.database import (
    AccountRecord,
    BatchCounts,
    DeadLetterRecord,
    EventRecord,
    OrderRecord,
)
from execflow.backends.sql import MIGRATIONS_DIR, SqlDatabase
from execflow.errors import DatabaseError


def head_revision() -> str | None:
    """The newest revision shipped in the package (what connect() upgrades to)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def event(n: int, order_id: str = "o1") -> EventRecord:
    return EventRecord(
        event_id=f"ev-{n}",
        order_id=order_id,
        account_id="live:6",
        kind="ORDER_OPENED" if n % 2 else "ORDER_FILLED",
        payload={"n": n, "price": "1.10005"},
        exec_id=f"x-{n}",
    )


async def test_schema_is_versioned_and_connect_is_repeatable(db_url: str) -> None:
    first = SqlDatabase(db_url)
    await first.connect()
    assert await first.schema_version() == head_revision() == "0005_account_rows"
    await first.insert_events([event(1)])
    await first.close()
    second = SqlDatabase(db_url)
    await second.connect()  # already at head: nothing to migrate, data kept
    assert await second.schema_version() == head_revision()
    assert await second.count_events() == 1
    await second.close()


async def test_event_insert_is_idempotent(db: SqlDatabase) -> None:
    assert await db.insert_events([event(n) for n in range(10)]) == 10
    assert await db.insert_events([event(n) for n in range(15)]) == 5
    assert await db.insert_events([event(3), event(3)]) == 0
    assert await db.count_events() == 15


async def test_counts_stay_exact_across_pages(db: SqlDatabase) -> None:
    # batch_size=7: known and new events interleaved over several pages of one executemany.
    assert await db.insert_events([event(n) for n in range(0, 40, 2)]) == 20
    assert await db.insert_events([event(n) for n in range(40)]) == 20
    assert await db.count_events() == 40
    old = [OrderRecord(f"o{n}", "live:6", "OPEN", 2, {}) for n in range(30)]
    assert await db.upsert_orders(old) == 30
    mixed = [OrderRecord(f"o{n}", "live:6", "CLOSED", 2 + n % 2, {}) for n in range(40)]
    assert await db.upsert_orders(mixed) == 15 + 10


async def test_batches_keep_insertion_order(db: SqlDatabase) -> None:
    # batch_size=7 in the fixture: 250 events span 36 statements.
    assert await db.insert_events([event(n, f"o{n % 3}") for n in range(250)]) == 250
    streamed = [e async for e in db.iter_events(batch_size=16)]
    assert [e.event_id for e in streamed] == [f"ev-{n}" for n in range(250)]
    assert [e.seq for e in streamed] == sorted(e.seq for e in streamed)
    tail = [e async for e in db.iter_events(after_seq=streamed[199].seq, batch_size=16)]
    assert [e.event_id for e in tail] == [f"ev-{n}" for n in range(200, 250)]
    first = streamed[0]
    assert first.payload == {"n": 0, "price": "1.10005"}
    assert first.exec_id == "x-0"
    assert first.created_at.tzinfo is not None
    mine = await db.events_for_order("o1")
    assert [e.event_id for e in mine] == [f"ev-{n}" for n in range(1, 250, 3)]


async def test_snapshots_only_move_forward(db: SqlDatabase) -> None:
    v2 = OrderRecord("o1", "live:6", "OPEN", 2, {"status": "OPEN"})
    assert await db.upsert_orders([v2]) == 1
    v1 = OrderRecord("o1", "live:6", "QUEUED", 1, {"status": "QUEUED"})
    assert await db.upsert_orders([v1]) == 0
    v3 = OrderRecord("o1", "live:6", "CLOSED", 3, {"status": "CLOSED"})
    other = OrderRecord("o2", "demo:1", "PENDING", 1, {})
    assert await db.upsert_orders([v3, v2, other]) == 2
    stored = await db.get_order("o1")
    assert stored is not None
    assert (stored.status, stored.version, stored.data) == ("CLOSED", 3, {"status": "CLOSED"})
    assert [o.order_id for o in await db.list_orders()] == ["o1", "o2"]
    assert [o.order_id for o in await db.list_orders("demo:1")] == ["o2"]
    assert await db.get_order("nope") is None

    assert await db.upsert_accounts([AccountRecord("live:6", 5, {"balance": "10.00"})]) == 1
    assert await db.upsert_accounts([AccountRecord("live:6", 4, {"balance": "99.00"})]) == 0
    account = await db.get_account("live:6")
    assert account is not None
    assert account.data == {"balance": "10.00", "positions": [], "reservations": []}
    assert [a.account_id for a in await db.list_accounts()] == ["live:6"]


async def test_a_batch_is_written_whole_or_not_at_all(db: SqlDatabase) -> None:
    order = OrderRecord("o1", "live:6", "OPEN", 2, {"status": "OPEN"})
    account = AccountRecord("live:6", 5, {"balance": "10.00"})
    counts = await db.write_batch([event(1), event(2), event(1)], [order], [account])
    assert counts == BatchCounts(inserted=2, orders_upserted=1, accounts_upserted=1)
    assert await db.write_batch([event(2)], [order], [account]) == BatchCounts(0, 0, 0)
    # an account that cannot be stored (a set is not JSON) fails the batch: its events and
    # order snapshot are rolled back with it, and the chain head did not move
    broken = AccountRecord("live:6", 6, {"balance": {"not", "json"}})
    newer = OrderRecord("o1", "live:6", "CLOSED", 3, {"status": "CLOSED"})
    with pytest.raises(DatabaseError):
        await db.write_batch([event(3)], [newer], [broken])
    assert await db.count_events() == 2
    stored = await db.get_order("o1")
    assert stored is not None and stored.version == 2
    head = await db.chain_head("live:6")
    assert head is not None and head.length == 2


async def test_dead_letters_are_kept_listed_and_marked_replayed(db: SqlDatabase) -> None:
    when = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    first = await db.insert_dead_letter(
        DeadLetterRecord(
            queue="execflow.reports",
            reason="unknown_lifecycle_id",
            body=b"\x00\x01raw",
            headers={"trace_id": "t1"},
            error="KeyError",
            attempts=5,
            created_at=when,
        )
    )
    second = await db.insert_dead_letter(DeadLetterRecord("execflow.reports", "malformed", b"{}"))
    listed = await db.list_dead_letters()
    assert [d.id for d in listed] == [first, second]
    assert listed[0].body == b"\x00\x01raw"
    assert listed[0].headers == {"trace_id": "t1"}
    assert listed[0].created_at == when
    assert await db.mark_replayed(first) is True
    assert await db.mark_replayed(first) is False
    assert [d.id for d in await db.list_dead_letters()] == [second]
    everything = await db.list_dead_letters(include_replayed=True)
    assert everything[0].replayed_at is not None
