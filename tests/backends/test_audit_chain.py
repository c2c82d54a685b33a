"""The audit chain in the database (SQLite and PostgreSQL): appended with the events,
never forked by redelivery or by concurrent writers, and every edit, deletion and
forged row made by SQL behind the writer's back is named by the verifier."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from execflow.backends.database import EventRecord
from execflow.backends.sql import SqlDatabase, _load_scripts, _upgrade
from execflow.backends.sql_tables import order_events
from execflow.domain.audit import ChainProblem, canonical_json, event_bytes, link
from execflow.pipeline.audit import AuditReport, verify_chains
from tests.backends.test_database_contract import head_revision


def event(n: int, account_id: str = "live:6", account_version: int | None = None) -> EventRecord:
    version = n if account_version is None else account_version
    return EventRecord(
        event_id=f"o{n}:x{n}:ORDER_OPENED",
        order_id=f"o{n}",
        account_id=account_id,
        kind="ORDER_OPENED",
        payload={
            "order": {"order_id": f"o{n}", "version": 1},
            "account": {"account_id": account_id, "version": version},
            "deltas": {"balance": f"-{n}.00", "used_margin_all": "10.00"},
        },
        exec_id=f"x{n}",
    )


@asynccontextmanager
async def behind_the_writer(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own, as someone with SQL access to the database would have."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


async def positions(db: SqlDatabase, account_id: str) -> list[tuple[int | None, str]]:
    return [(e.chain_seq, e.event_id) async for e in db.iter_chain(account_id)]


async def test_events_are_chained_per_account_and_redelivery_changes_nothing(
    db: SqlDatabase,
) -> None:
    # batch_size=7: the 20 events span several pages of the insert
    assert await db.insert_events([event(n, f"acc{n % 2}") for n in range(20)]) == 20
    head = await db.chain_head("acc0")
    assert head is not None and head.length == 10
    chained = [e async for e in db.iter_chain("acc0")]
    assert [e.chain_seq for e in chained] == list(range(1, 11))
    assert chained[-1].chain_hash == head.head_hash
    assert (await db.events_for_order("o4"))[0].chain_hash == chained[2].chain_hash
    # the same events again, alone and mixed with new ones: no fork, no second link
    assert await db.insert_events([event(n, f"acc{n % 2}") for n in range(20)]) == 0
    assert await db.chain_head("acc0") == head
    assert await db.insert_events([event(4, "acc0"), event(20, "acc0"), event(20, "acc0")]) == 1
    assert (await positions(db, "acc0"))[-1] == (11, "o20:x20:ORDER_OPENED")
    report = await verify_chains(db)
    assert (report.ok, report.accounts, report.events) == (True, 2, 21)


async def test_a_batch_is_chained_in_account_version_order_a_late_event_appended(
    db: SqlDatabase,
) -> None:
    batch = [event(1, account_version=3), event(2, account_version=1), event(3, account_version=2)]
    assert await db.insert_events(batch) == 3
    assert [eid for _, eid in await positions(db, "live:6")] == [
        "o2:x2:ORDER_OPENED",
        "o3:x3:ORDER_OPENED",
        "o1:x1:ORDER_OPENED",
    ]
    # an event whose account version is older than the head arrives late: appended
    assert await db.insert_events([event(4, account_version=2)]) == 1
    assert (await positions(db, "live:6"))[-1] == (4, "o4:x4:ORDER_OPENED")
    # insertion order (seq, what the rebuild reads) is still the arrival order
    assert [e.event_id async for e in db.iter_events()][:3] == [e.event_id for e in batch]
    assert (await verify_chains(db)).ok


async def _stored(db: SqlDatabase, n: int = 6) -> None:
    await db.insert_events([event(k) for k in range(1, n + 1)])
    await db.insert_events([event(k, "demo:2") for k in range(100, 103)])


async def _verify(db: SqlDatabase, account_id: str | None = None) -> AuditReport:
    report = await verify_chains(db, account_id)
    if account_id is None:
        assert report.accounts == 2
    return report


async def test_an_amount_edited_by_sql_is_the_first_broken_link(
    db_url: str, db: SqlDatabase
) -> None:
    await _stored(db)
    [target] = await db.events_for_order("o3")
    edited = {**target.payload, "deltas": {**target.payload["deltas"], "balance": "-300.00"}}
    async with behind_the_writer(db_url) as conn:
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.event_id == target.event_id)
            .values(payload=edited)
        )
    report = await _verify(db)
    [broken] = report.broken
    assert broken.problem is ChainProblem.HASH_MISMATCH
    assert (broken.account_id, broken.position) == ("live:6", 3)
    assert (broken.event_id, broken.order_id) == (target.event_id, "o3")
    assert broken.found == target.chain_hash and broken.expected != broken.found
    assert (await _verify(db, "demo:2")).ok
    assert (await _verify(db, "live:6")).broken == (broken,)


async def test_a_deleted_row_is_named_at_the_next_event(db_url: str, db: SqlDatabase) -> None:
    await _stored(db)
    async with behind_the_writer(db_url) as conn:
        await conn.execute(sa.delete(order_events).where(order_events.c.order_id == "o2"))
    [broken] = (await _verify(db)).broken
    assert broken.problem is ChainProblem.GAP
    assert (broken.account_id, broken.position, broken.order_id) == ("live:6", 2, "o3")


async def test_deleting_the_newest_rows_disagrees_with_the_head(
    db_url: str, db: SqlDatabase
) -> None:
    await _stored(db)
    async with behind_the_writer(db_url) as conn:
        await conn.execute(sa.delete(order_events).where(order_events.c.order_id == "o6"))
    [broken] = (await _verify(db)).broken
    assert broken.problem is ChainProblem.HEAD_MISMATCH
    assert (broken.position, broken.order_id) == (5, "o5")


async def test_forged_rows_are_caught_however_they_are_inserted(
    db_url: str, db: SqlDatabase
) -> None:
    await _stored(db)
    head = await db.chain_head("live:6")
    assert head is not None
    forged_id = "o99:x99:ORDER_CLOSED"
    forged_at = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    forged = {
        "event_id": forged_id,
        "order_id": "o99",
        "account_id": "live:6",
        "exec_id": "x99",
        "kind": "ORDER_CLOSED",
        "payload": {"deltas": {"balance": "5000.00"}},
        "created_at": forged_at,
    }
    # 1. a plain INSERT, as the table allows it
    async with behind_the_writer(db_url) as conn:
        await conn.execute(sa.insert(order_events).values(**forged))
    [broken] = (await _verify(db, "live:6")).broken
    assert (broken.problem, broken.event_id) == (ChainProblem.UNCHAINED, "o99:x99:ORDER_CLOSED")
    # 2. with the next position and a correctly computed link: the head gives it away
    data = event_bytes(
        account_id="live:6",
        chain_seq=7,
        created_at=forged_at,
        event_id=forged_id,
        exec_id="x99",
        kind="ORDER_CLOSED",
        order_id="o99",
        payload_json=canonical_json(forged["payload"]),
    )
    async with behind_the_writer(db_url) as conn:
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.event_id == forged["event_id"])
            .values(chain_seq=7, chain_hash=link(head.head_hash, data))
        )
    [broken] = (await _verify(db, "live:6")).broken
    assert (broken.problem, broken.position) == (ChainProblem.HEAD_MISMATCH, 7)
    assert broken.event_id == forged["event_id"]
    # 3. slipped in between two events (the later ones renumbered): a hash mismatch there
    async with behind_the_writer(db_url) as conn:
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.account_id == "live:6", order_events.c.chain_seq >= 3)
            .values(chain_seq=order_events.c.chain_seq + 100)
        )
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.event_id == forged["event_id"])
            .values(chain_seq=3)
        )
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.account_id == "live:6", order_events.c.chain_seq >= 103)
            .values(chain_seq=order_events.c.chain_seq - 99)
        )
    [broken] = (await _verify(db)).broken
    assert (broken.problem, broken.position, broken.event_id) == (
        ChainProblem.HASH_MISMATCH,
        3,
        forged["event_id"],
    )


async def test_verify_of_an_account_without_events_checks_nothing(db: SqlDatabase) -> None:
    await _stored(db)
    report = await verify_chains(db, "live:404")
    assert (report.ok, report.accounts, report.events) == (True, 0, 0)


async def test_concurrent_writers_keep_one_chain_per_account(db_url: str) -> None:
    """Four writers (own pools), overlapping batches with redeliveries, three accounts."""
    writers = [SqlDatabase(db_url, batch_size=16) for _ in range(4)]
    for writer in writers:
        await writer.connect()
    try:
        everything = [event(n, f"acc{n % 3}", account_version=n) for n in range(240)]

        async def write(index: int) -> int:
            total = 0
            # each writer takes every event once in its own order: all overlap, redeliver
            mine = everything[index::4] + everything[(index + 1) % 4 :: 4]
            for start in range(0, len(mine), 20):
                total += await writers[index].insert_events(mine[start : start + 20])
            return total

        results = await asyncio.gather(*(write(i) for i in range(4)))
        assert sum(results) == 240
        report = await verify_chains(writers[0])
        assert (report.ok, report.events) == (True, 240)
        assert sorted(h.length for h in report.heads) == [80, 80, 80]
    finally:
        for writer in writers:
            await writer.close()


async def _at_revision(url: str, revision: str) -> None:
    engine = create_async_engine(url)
    try:
        config, script = await asyncio.to_thread(_load_scripts)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, config, script, revision)
    finally:
        await engine.dispose()


async def test_the_upgrade_chains_the_events_already_stored(db_url: str) -> None:
    await _at_revision(db_url, "0001")
    old_events = sa.table(
        "order_events",
        *(
            sa.column(c.name, c.type)
            for c in order_events.columns
            if not c.name.startswith("chain")
        ),
    )
    rows: list[dict[str, Any]] = [
        {
            "event_id": e.event_id,
            "order_id": e.order_id,
            "account_id": e.account_id,
            "exec_id": e.exec_id,
            "kind": e.kind,
            "payload": e.payload,
            "created_at": datetime(2026, 11, 29, 12, n, tzinfo=UTC),
        }
        for n, e in enumerate([event(n, f"acc{n % 2}", account_version=9 - n) for n in range(9)])
    ]
    rows.append({**rows[0], "event_id": "huge", "payload": {"n": 2**60}})
    # no canonical form (RFC 8785 has no exact big integer next to a float): left unchained
    rows.append(
        {**rows[1], "account_id": "acc9", "event_id": "odd", "payload": {"n": 2**60, "f": 0.5}}
    )
    async with behind_the_writer(db_url) as conn:
        await conn.execute(sa.insert(old_events), rows)
    db = SqlDatabase(db_url)
    await db.connect()  # upgrades to head: chains what is there
    try:
        assert await db.schema_version() == head_revision()
        # insertion (seq) order, not account-version order: that is how they were stored
        assert [eid for _, eid in await positions(db, "acc0")][:2] == [
            "o0:x0:ORDER_OPENED",
            "o2:x2:ORDER_OPENED",
        ]
        await db.insert_events([event(50, "acc0")])  # and the writer goes on from there
        report = await verify_chains(db)
        assert report.events == 11
        [odd] = report.broken
        assert (odd.account_id, odd.problem, odd.event_id) == (
            "acc9",
            ChainProblem.UNCHAINED,
            "odd",
        )
    finally:
        await db.close()


async def test_the_cli_names_the_break_on_either_database(db_url: str, db: SqlDatabase) -> None:
    """``execflow audit verify`` as a process, on SQLite and on PostgreSQL."""
    await _stored(db)
    env = {**os.environ, "EXECFLOW_DATABASE_URL": db_url}

    async def cli(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from execflow.cli.app import main; main()",
            "audit",
            "verify",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    code, out = await cli()
    assert code == 0 and "clean (2 account(s), 9 event(s))" in out, out
    async with behind_the_writer(db_url) as conn:
        await conn.execute(
            sa.update(order_events)
            .where(order_events.c.order_id == "o4")
            .values(kind="ORDER_REJECTED")
        )
    code, out = await cli()
    assert code == 1, out
    assert "account=live:6 position=4 problem=hash_mismatch" in out
    assert "event_id=o4:x4:ORDER_OPENED order_id=o4" in out
    code, out = await cli("--account", "demo:2", "--json")
    assert code == 0 and json.loads(out)["events"] == 3


class AppendingMeanwhile:
    """The database, with a db writer appending 3 events once verify reads the first head."""

    def __init__(self, db: SqlDatabase, before_the_read: bool) -> None:
        self.db = db
        self.before_the_read = before_the_read
        self.appended = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    async def chain_head(self, account_id: str) -> Any:
        if self.appended:
            return await self.db.chain_head(account_id)
        self.appended = True
        if self.before_the_read:
            await self.db.insert_events([event(n) for n in range(50, 53)])
            return await self.db.chain_head(account_id)
        head = await self.db.chain_head(account_id)
        await self.db.insert_events([event(n) for n in range(60, 63)])
        return head


async def test_verify_beside_a_running_writer_raises_no_false_alarm(db: SqlDatabase) -> None:
    await db.insert_events([event(n) for n in range(1, 7)])
    for before_the_read in (True, False):
        report = await verify_chains(AppendingMeanwhile(db, before_the_read), "live:6")
        assert report.ok, report.broken
    assert (await verify_chains(db)).events == 12


async def test_event_times_are_stored_and_hashed_in_utc(db: SqlDatabase) -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2026, 11, 29, 13, 0, 0, 250, tzinfo=paris)
    naive = datetime(2026, 11, 29, 12, 30)  # a naive time is UTC, whatever the machine's zone
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        await db.insert_events(
            [replace(event(1), created_at=when), replace(event(2), created_at=naive)]
        )
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
    stored = {e.event_id: e.created_at async for e in db.iter_chain("live:6")}
    assert stored["o1:x1:ORDER_OPENED"] == when and stored["o1:x1:ORDER_OPENED"].tzinfo == UTC
    assert stored["o2:x2:ORDER_OPENED"] == naive.replace(tzinfo=UTC)
    assert (await verify_chains(db)).ok
