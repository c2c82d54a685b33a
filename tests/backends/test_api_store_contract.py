"""The API's store (keys, idempotency claims, order listings) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from execflow.backends import sql_api_drivers
from execflow.backends.api_store import ApiKeyRecord, IdempotencyRecord, OrderQuery
from execflow.backends.database import OrderRecord
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_api import SqlApiStore
from execflow.errors import DatabaseError

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


async def test_one_claim_wins_among_parallel_ones(db: SqlDatabase) -> None:
    stores = [SqlApiStore(db) for _ in range(3)]
    record = IdempotencyRecord("k1", "idem", "print", T0)
    claims = await asyncio.gather(
        *(stores[i % 3].claim(record, T0 - timedelta(days=1)) for i in range(12))
    )
    assert sum(c.won for c in claims) == 1
    assert all(
        c.existing is not None and c.existing.status_code is None for c in claims if not c.won
    )
    await stores[0].complete("k1", "idem", 201, b'{"a":1}', {"Location": "/x"}, T0)
    done = await stores[1].get_claim("k1", "idem")
    assert done is not None and (done.status_code, done.body, done.headers) == (
        201,
        b'{"a":1}',
        {"Location": "/x"},
    )
    # older than the expiry: forgotten and claimed anew
    again = await stores[2].claim(IdempotencyRecord("k1", "idem", "other", T0), T0 + timedelta(1))
    assert again.won
    # the sweep deletes what is past the expiry, and only that, at most ``limit`` a time
    for name in ("a", "b"):
        await stores[0].claim(IdempotencyRecord("k1", name, "p", T0), T0 - timedelta(1))
    await stores[0].claim(IdempotencyRecord("k2", "new", "p", T0 + timedelta(2)), T0)
    assert await stores[0].forget_expired(T0 + timedelta(1), 2) == 2
    assert await stores[0].forget_expired(T0 + timedelta(1), 2) == 1
    assert await stores[0].forget_expired(T0 + timedelta(1), 2) == 0
    for name in ("idem", "a", "b"):
        assert await stores[0].get_claim("k1", name) is None
    assert await stores[0].get_claim("k2", "new") is not None


async def test_keys_are_stored_listed_and_revoked(db: SqlDatabase) -> None:
    store = SqlApiStore(db)
    record = ApiKeyRecord("abc123", "desk", b"salt", b"h" * 32, ("read",), ("live:6",), T0)
    await store.add_key(record)
    assert await store.get_key("abc123") == record
    assert await store.revoke_key("abc123", T0) is True
    assert await store.revoke_key("abc123", T0) is False
    [listed] = await store.list_keys()
    assert listed.revoked_at == T0 and await store.get_key("nope") is None


async def test_order_listing_filters_and_pages(db: SqlDatabase) -> None:
    rows = [
        OrderRecord(
            order_id=f"{1000 + n}",
            account_id="live:6" if n % 3 else "live:7",
            status="OPEN" if n % 2 else "CLOSED",
            version=1,
            data={"order_id": f"{1000 + n}", "symbol": "EURUSD" if n % 4 else "GBPUSD"},
            updated_at=T0 + timedelta(minutes=n),
        )
        for n in range(12)
    ]
    await db.upsert_orders(rows)
    store = SqlApiStore(db)
    query = OrderQuery(accounts=("live:6",), status=("OPEN",), symbol="EURUSD", limit=2)
    first = await store.find_orders(query)
    rest = await store.find_orders(replace(query, after=first[-1].order_id))
    want = sorted(
        (
            r.order_id
            for r in rows
            if r.account_id == "live:6" and r.status == "OPEN" and r.data["symbol"] == "EURUSD"
        ),
        reverse=True,
    )
    assert [r.order_id for r in first + rest] == want
    window = await store.find_orders(
        OrderQuery(accounts=None, since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5))
    )
    assert [r.order_id for r in window] == ["1004", "1003"]


async def test_claims_and_answers_queued_together_are_one_group_and_stay_apart(
    db: SqlDatabase,
) -> None:
    store = SqlApiStore(db)
    await store.claim(IdempotencyRecord("k1", "done-before", "p", T0), T0 - timedelta(days=1))
    # claimed in one burst: distinct keys all win, a duplicate within the burst loses to
    # the first, an answer stored in the same group is there for the loser to read
    answer = store.complete("k1", "done-before", 201, b"{}", {"Location": "/v1/orders/1"}, T0)
    burst = [
        store.claim(IdempotencyRecord("k1", f"idem-{n}", "p", T0), T0 - timedelta(days=1))
        for n in range(5)
    ]
    duplicate = store.claim(IdempotencyRecord("k1", "idem-0", "p", T0), T0 - timedelta(days=1))
    again = store.claim(IdempotencyRecord("k1", "done-before", "p", T0), T0 - timedelta(days=1))
    # the answer's task first, then the claims', as one gather over all of them would
    answered = asyncio.ensure_future(answer)
    claimed = asyncio.gather(*burst, duplicate, again)
    await answered
    *claims, lost, replay = await claimed
    assert [c.won for c in claims] == [True] * 5
    assert not lost.won and lost.existing is not None and lost.existing.status_code is None
    assert not replay.won and replay.existing is not None
    assert (replay.existing.status_code, replay.existing.headers) == (
        201,
        {"Location": "/v1/orders/1"},
    )


async def test_a_failing_write_fails_alone(db: SqlDatabase) -> None:
    store = SqlApiStore(db)
    await store.claim(IdempotencyRecord("k1", "bad", "p", T0), T0 - timedelta(days=1))
    unstorable = {"Location": object()}  # not JSON: this answer cannot be written
    outcomes = await asyncio.gather(
        *(
            store.claim(IdempotencyRecord("k1", f"ok-{n}", "p", T0), T0 - timedelta(days=1))
            for n in range(3)
        ),
        store.complete("k1", "bad", 201, b"{}", unstorable, T0),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert [getattr(o, "won", None) for o in outcomes[:3]] == [True, True, True]
    assert isinstance(outcomes[3], DatabaseError)
    for n in range(3):
        assert await store.get_claim("k1", f"ok-{n}") is not None
    stored = await store.get_claim("k1", "bad")
    assert stored is not None and stored.status_code is None


async def test_a_write_whose_caller_went_away_is_committed_all_the_same(db: SqlDatabase) -> None:
    store = SqlApiStore(db)
    assert (await store.claim(IdempotencyRecord("k1", "first", "p", T0), T0)).won
    # the writer is idle now: on SQLite the next write is committed by its caller itself
    claim = asyncio.ensure_future(store.claim(IdempotencyRecord("k1", "gone", "p", T0), T0))
    await asyncio.sleep(0)  # its write has started
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    for _ in range(200):
        if await store.get_claim("k1", "gone") is not None:
            break
        await asyncio.sleep(0.01)
    assert await store.get_claim("k1", "gone") is not None


def _writer_connections(db: SqlDatabase, pool: Any) -> int:
    """Connections the idempotency writer holds: pooled (PostgreSQL) or its own thread's."""
    if db.dialect == "postgresql":
        return int(pool.checkedout())
    return sum(t.name.startswith("api-idempotency-sqlite") for t in threading.enumerate())


async def test_the_writer_gives_its_connection_back_and_survives_a_lost_one(
    db: SqlDatabase,
) -> None:
    store = SqlApiStore(db)
    pool = db.engine.pool
    assert (await store.claim(IdempotencyRecord("k1", "a", "p", T0), T0)).won
    assert _writer_connections(db, pool) == 1  # kept for the next writes
    if db.dialect == "postgresql":
        # the server drops the writer's connection (a restart, an operator): the next
        # write notices, takes a fresh connection and goes through
        async with db.engine.connect() as conn:
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    assert (await store.claim(IdempotencyRecord("k1", "b", "p", T0), T0)).won
    await store.complete("k1", "b", 202, b"{}", {}, T0)
    done = await store.get_claim("k1", "b")
    assert done is not None and done.status_code == 202
    await db.close()  # the writer lets its connection go first
    assert _writer_connections(db, pool) == 0


async def test_the_writes_can_be_opened_before_the_first_claim(db: SqlDatabase) -> None:
    store = SqlApiStore(db)
    pool = db.engine.pool
    assert _writer_connections(db, pool) == 0
    await store.open_writes()  # a server about to listen
    assert _writer_connections(db, pool) == 1
    await store.open_writes()  # once only
    assert _writer_connections(db, pool) == 1
    assert (await store.claim(IdempotencyRecord("k1", "a", "p", T0), T0)).won
    assert _writer_connections(db, pool) == 1  # the first claim used it
    await db.close()
    assert _writer_connections(db, pool) == 0


async def test_sqlite_checkpoints_run_beside_the_writes_not_in_them(
    db: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("a SQLite write-ahead log matter")
    checkpointed = threading.Event()
    real = sql_api_drivers._Checkpointer._checkpoint

    def checkpoint(self: Any) -> None:
        real(self)
        checkpointed.set()

    monkeypatch.setattr(sql_api_drivers, "_CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(sql_api_drivers._Checkpointer, "_checkpoint", checkpoint)
    store = SqlApiStore(db)
    path = db.engine.url.database
    assert path is not None  # the SQLite database file

    def in_the_file() -> int:
        """Claims in the database file itself, not counting the write-ahead log."""
        with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as file:
            return int(file.execute("SELECT count(*) FROM api_idempotency").fetchone()[0])

    with sqlite3.connect(path) as schema:  # the tables into the file itself first
        schema.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for n in range(4):  # one group each
        await store.claim(IdempotencyRecord("k1", f"c-{n}", "p", T0), T0)
    assert in_the_file() == 0  # still in the log: the writer's commits do not checkpoint
    await store.claim(IdempotencyRecord("k1", "c-4", "p", T0), T0)
    assert await asyncio.to_thread(checkpointed.wait, 10)
    assert in_the_file() == 5
