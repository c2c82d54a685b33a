"""Accounts as a header plus rows, on SQLite and PostgreSQL (``backends.sql_accounts``).

Rows are kept newest version first, row by row, whatever order and how many times they
come; a whole-account document supersedes older rows; the migration splits the
accounts stored before it into header and rows.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from execflow.backends.database import AccountRecord
from execflow.backends.sql import SqlDatabase, _load_scripts, _upgrade
from execflow.domain.account_rows import AccountRow, rows_of_changes
from execflow.domain.codec import account_to_dict
from tests.domain.account_history import account_history

ACCOUNT = "live:6"


def _records(payloads: tuple[dict[str, Any], ...]) -> list[AccountRecord]:
    out = []
    for payload in payloads:
        header = payload["account"]
        rows = rows_of_changes(ACCOUNT, header["version"], payload.get("account_changes"))
        out.append(AccountRecord(ACCOUNT, header["version"], header, rows=tuple(rows)))
    return out


def _key(row: AccountRow) -> tuple[str, str]:
    return (row.kind, row.order_id)


async def test_rows_in_any_order_and_twice_give_the_account(db: SqlDatabase) -> None:
    history = account_history(50, seed=5)
    await db.upsert_accounts([AccountRecord(ACCOUNT, 0, account_to_dict(history.start))])
    records = _records(history.payloads)
    stream = [*records, *records[::3]]
    random.Random(5).shuffle(stream)
    # three concurrent writers, batches of five
    batches = [stream[n : n + 5] for n in range(0, len(stream), 5)]

    async def writer(mine: list[list[AccountRecord]]) -> None:
        for batch in mine:
            await db.upsert_accounts(batch)

    await asyncio.gather(*(writer(batches[w::3]) for w in range(3)))
    stored = await db.get_account(ACCOUNT)
    assert stored is not None
    assert stored.data == account_to_dict(history.final)
    assert stored.version == history.final.version
    [listed] = await db.list_accounts()
    assert listed.data == stored.data
    assert sorted(listed.rows, key=_key) == sorted(stored.rows, key=_key)


async def test_a_removal_stays_removed_when_an_older_upsert_comes_later(db: SqlDatabase) -> None:
    header = {"account_id": ACCOUNT, "balance": "10.00", "version": 4}
    removed = AccountRow(ACCOUNT, "positions", "o1", 4, False)
    opened = AccountRow(ACCOUNT, "positions", "o1", 2, True, {"order_id": "o1"})
    held = AccountRow(ACCOUNT, "reservations", "o2", 3, True, {"order_id": "o2", "amount": "5"})
    assert await db.upsert_accounts([AccountRecord(ACCOUNT, 4, header, rows=(removed,))]) == 1
    assert await db.upsert_accounts([AccountRecord(ACCOUNT, 2, {}, rows=(opened, held))]) == 0
    stored = await db.get_account(ACCOUNT)
    assert stored is not None
    assert stored.data == {
        "account_id": ACCOUNT,
        "balance": "10.00",
        "positions": [],
        "reservations": [{"order_id": "o2", "amount": "5"}],
        "version": 4,
    }
    assert {(r.order_id, r.version, r.live) for r in stored.rows} == {
        ("o1", 4, False),
        ("o2", 3, True),
    }


async def test_a_whole_account_document_supersedes_older_rows(db: SqlDatabase) -> None:
    stale = AccountRow(ACCOUNT, "positions", "gone", 3, True, {"order_id": "gone"})
    later = AccountRow(ACCOUNT, "positions", "later", 9, True, {"order_id": "later"})
    await db.upsert_accounts([AccountRecord(ACCOUNT, 9, {"version": 9}, rows=(stale, later))])
    whole = {"version": 5, "positions": [{"order_id": "kept"}], "reservations": []}
    # an older header: it loses, but its snapshot still rules out rows before version 5
    assert await db.upsert_accounts([AccountRecord(ACCOUNT, 5, whole)]) == 1
    stored = await db.get_account(ACCOUNT)
    assert stored is not None and stored.rows_from == 5
    assert stored.data == {
        "positions": [{"order_id": "kept"}, {"order_id": "later"}],
        "reservations": [],
        "version": 9,
    }


async def test_the_migration_splits_stored_accounts_into_header_and_rows(tmp_path: Path) -> None:
    history = account_history(12, seed=9)
    whole = account_to_dict(history.final)
    assert whole["positions"] or whole["reservations"]
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(url)
    try:
        config, script = await asyncio.to_thread(_load_scripts)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, config, script, "0004_lp_executions")
            await conn.execute(
                sa.text(
                    "INSERT INTO accounts (account_id, version, data, updated_at)"
                    " VALUES (:a, :v, :d, CURRENT_TIMESTAMP)"
                ),
                {"a": ACCOUNT, "v": history.final.version, "d": orjson.dumps(whole).decode()},
            )
    finally:
        await engine.dispose()
    database = SqlDatabase(url)
    await database.connect()
    try:
        stored = await database.get_account(ACCOUNT)
        assert stored is not None and stored.data == whole
        assert stored.rows_from == history.final.version
        assert len(stored.rows) == len(whole["positions"]) + len(whole["reservations"])
        async with database.engine.connect() as conn:
            header = (await conn.execute(sa.text("SELECT data FROM accounts"))).scalar_one()
        assert "positions" not in orjson.loads(header)
    finally:
        await database.close()
