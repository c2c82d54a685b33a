"""The LP execution store, on SQLite and PostgreSQL: whole-row upserts, reads, time filters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, LpExecution

T0 = datetime(2025, 3, 3, 12, 0, 0, 123456, tzinfo=UTC)


def execution(n: int, lp: str = "lp1") -> LpExecution:
    return LpExecution(
        lifecycle_id=f"lc-{n:03d}",
        lp=lp,
        order_id=f"o-{n}",
        account_id="live:6",
        kind=RequestKind.OPEN,
        symbol="USDJPY",
        side=Side.SELL,
        order_type=LpOrderType.MARKET,
        qty=Decimal("0.30"),
        sent_at=T0 + timedelta(seconds=n % 7, microseconds=n),
        reference_px=Decimal("150.012"),
        pip=Decimal("0.01"),
        contract_size=Decimal(100000),
        profit_currency="JPY",
        usd_pair="USDJPY",
        usd_bid=Decimal("150.000"),
        usd_ask=Decimal("150.030"),
    )


async def test_records_are_written_whole_and_read_back_exactly(db: SqlDatabase) -> None:
    store = SqlLpExecutionStore(db)
    sent = execution(1)
    assert await store.upsert([sent]) == 1
    assert await store.get("lc-001") == sent
    done = replace(
        sent,
        status=ExecutionStatus.EXECUTED,
        first_report_at=T0 + timedelta(milliseconds=3),
        filled_at=T0 + timedelta(milliseconds=4),
        done_at=T0 + timedelta(milliseconds=4),
        cum_qty=Decimal("0.30"),
        avg_px=Decimal("150.00900000000001"),
    )
    # the last state of a lifecycle id in a batch wins, and replaces the stored one
    assert await store.upsert([sent, done]) == 1
    assert await store.get("lc-001") == done
    assert await store.get("nope") is None


async def test_iteration_by_send_time_with_filters_across_pages(db: SqlDatabase) -> None:
    store = SqlLpExecutionStore(db)
    records = [execution(n, "lp1" if n % 3 else "lp2") for n in range(40)]
    await store.upsert(records)
    everything = [e async for e in store.iter(batch_size=7)]
    assert sorted(everything, key=lambda e: e.lifecycle_id) == records
    assert [e.sent_at for e in everything] == sorted(e.sent_at for e in records)
    lp2 = [e.lifecycle_id async for e in store.iter(lp="lp2", batch_size=4)]
    assert sorted(lp2) == [e.lifecycle_id for e in records if e.lp == "lp2"]
    since = T0 + timedelta(seconds=5)
    recent = {e.lifecycle_id async for e in store.iter(since=since, batch_size=3)}
    assert recent == {e.lifecycle_id for e in records if e.sent_at >= since}
