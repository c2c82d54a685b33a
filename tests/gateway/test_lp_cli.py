"""``execflow lp quality``: the per-LP figures of the records in the database, text and JSON."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.cli.app import app
from execflow.cli.lp import parse_since
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, LpExecution

NOW = datetime.now(UTC)


def execution(lid: str, lp: str, sent_at: datetime, **changes: object) -> LpExecution:
    base = LpExecution(
        lifecycle_id=lid,
        lp=lp,
        order_id="o-" + lid,
        account_id="live:1",
        kind=RequestKind.OPEN,
        symbol="EURUSD",
        side=Side.BUY,
        order_type=LpOrderType.MARKET,
        qty=Decimal("1"),
        sent_at=sent_at,
        reference_px=Decimal("1.08502"),
        pip=Decimal("0.0001"),
        contract_size=Decimal(100000),
        profit_currency="USD",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def filled(lid: str, lp: str, sent_at: datetime, price: str, ms: float) -> LpExecution:
    at = sent_at + timedelta(milliseconds=ms)
    return execution(
        lid,
        lp,
        sent_at,
        status=ExecutionStatus.EXECUTED,
        first_report_at=at,
        filled_at=at,
        done_at=at,
        cum_qty=Decimal("1"),
        avg_px=Decimal(price),
    )


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "q.db"

    async def fill() -> None:
        db = SqlDatabase(f"sqlite+aiosqlite:///{path}")
        await db.connect()
        old = NOW - timedelta(days=3)
        await SqlLpExecutionStore(db).upsert(
            [
                filled("a", "primebank", NOW - timedelta(minutes=5), "1.08512", 4),
                filled("b", "primebank", NOW - timedelta(minutes=4), "1.08492", 8),
                execution(
                    "c",
                    "primebank",
                    NOW - timedelta(minutes=3),
                    status=ExecutionStatus.REJECTED,
                    first_report_at=NOW - timedelta(minutes=3) + timedelta(milliseconds=2),
                    reject_reason="Price off quotes",
                ),
                filled("d", "metalslp", old, "1.08502", 30),
            ]
        )
        await db.close()

    asyncio.run(fill())
    for name in list(os.environ):
        if name.startswith("EXECFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EXECFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("COLUMNS", "200")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["lp", "quality", *args])
    return result.exit_code, result.stdout + result.stderr


def test_the_table_shows_each_lps_figures(database: Path) -> None:
    code, out = run()
    assert code == 0, out
    assert "metalslp" in out and "primebank" in out
    assert "66.67 %" in out  # primebank: 2 of 3 lots filled
    assert "Price off quotes" in out
    assert "0.000 (-1.00 .. 1.00)" in out  # one pip paid, one gained: mean 0


def test_json_lp_and_since(database: Path) -> None:
    code, out = run("--json", "--lp", "primebank")
    assert code == 0, out
    (primebank,) = json.loads(out)["lps"]
    assert primebank["lp"] == "primebank" and primebank["requests"] == 3
    assert primebank["fill_ratio"] == str(Decimal(2) / Decimal(3))
    assert primebank["rejects_by_reason"] == {"Price off quotes": 1}
    assert primebank["first_report"]["max_ms"] == 8.0
    assert Decimal(primebank["slippage"]["total_usd"]) == 0  # -10 USD + 10 USD
    code, out = run("--json", "--since", "1d")
    assert [lp["lp"] for lp in json.loads(out)["lps"]] == ["primebank"]
    since = (NOW - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out = run("--json", "--since", since)
    assert [lp["lp"] for lp in json.loads(out)["lps"]] == ["metalslp", "primebank"]
    code, out = run("--since", "1m")
    assert code == 0 and "no requests to an LP recorded since then" in out


def test_a_bad_since_is_a_usage_error(database: Path) -> None:
    code, out = run("--since", "last tuesday")
    assert code == 2 and "--since" in out
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-01-01", now) == datetime(2026, 1, 1, tzinfo=UTC)
