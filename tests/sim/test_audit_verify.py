"""``execflow audit verify`` over an embedded demo run: clean, then each tampering named."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from execflow.cli.app import app
from execflow.cli.audit import EXIT_BROKEN, EXIT_UNREACHABLE


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small embedded run (intake, dispatcher, seven workers, db writer, SQLite)."""
    run_dir = tmp_path_factory.mktemp("audit") / "demo"
    args = ["demo", "--orders", "120", "--accounts", "4", "--dir", str(run_dir), "--seed", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run_dir / "execflow.db"


@pytest.fixture
def db_copy(demo_db: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "copy.db"
    with sqlite3.connect(demo_db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    yield copy


def verify(db: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "EXECFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "EXECFLOW_LOG_DIR": str(db.parent / "logs"),
    }
    result = CliRunner().invoke(app, ["audit", "verify", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def sql(db: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(statement, params))


def test_an_embedded_run_leaves_chains_that_verify(demo_db: Path) -> None:
    code, out, _ = verify(demo_db)
    assert code == 0, out
    [(accounts, events)] = sql(
        demo_db, "SELECT COUNT(DISTINCT account_id), COUNT(*) FROM order_events"
    )
    assert f"clean ({accounts} account(s), {events} event(s))" in out
    report = json.loads(verify(demo_db, "--json")[1])
    assert report["ok"] is True and report["events"] == events
    heads = {h["account_id"]: h for h in report["heads"]}
    for account, length in sql(demo_db, "SELECT account_id, COUNT(*) FROM order_events GROUP BY 1"):
        assert heads[account]["length"] == length


def test_an_edited_amount_is_named_and_exits_1(db_copy: Path) -> None:
    [(event_id, order_id, account, payload)] = sql(
        db_copy,
        "SELECT event_id, order_id, account_id, payload FROM order_events "
        "WHERE kind = 'ORDER_CLOSED' ORDER BY seq LIMIT 1",
    )
    data = json.loads(str(payload))
    data["deltas"]["balance"] = "1000000.00"
    sql(
        db_copy,
        "UPDATE order_events SET payload = ? WHERE event_id = ?",
        json.dumps(data),
        event_id,
    )
    code, out, _ = verify(db_copy)
    assert code == EXIT_BROKEN
    assert "problem=hash_mismatch" in out
    assert f"account={account}" in out and f"event_id={event_id}" in out
    assert f"order_id={order_id}" in out
    [broken] = json.loads(verify(db_copy, "--json")[1])["broken"]
    assert (broken["event_id"], broken["problem"]) == (event_id, "hash_mismatch")
    errors = (db_copy.parent / "logs" / "provider_errors.log").read_text().splitlines()
    [line, _again] = [x for x in errors if "[AUDIT:BROKEN]" in x]
    assert " ERROR " in line and f"event_id={event_id}" in line and "problem=hash_mismatch" in line
    [(other,)] = sql(
        db_copy, "SELECT account_id FROM order_events WHERE account_id != ? LIMIT 1", account
    )
    assert verify(db_copy, "--account", str(other))[0] == 0
    assert verify(db_copy, "--account", str(account))[0] == EXIT_BROKEN


def test_a_deleted_and_a_forged_row_are_named(db_copy: Path) -> None:
    [(account, event_id)] = sql(
        db_copy, "SELECT account_id, event_id FROM order_events WHERE chain_seq = 5 LIMIT 1"
    )
    sql(db_copy, "DELETE FROM order_events WHERE event_id = ?", event_id)
    code, out, _ = verify(db_copy, "--account", str(account))
    assert code == EXIT_BROKEN
    assert "problem=gap" in out and "position=5" in out
    # a forged row whose account id carries terminal escapes: named, shown escaped
    sql(
        db_copy,
        "INSERT INTO order_events (event_id, order_id, account_id, exec_id, kind, payload, "
        "created_at) VALUES (?, ?, ?, '', 'ORDER_CLOSED', '{}', '2026-11-29 12:00:00.000000')",
        "forged\x1b[2J",
        "o\u202e1",
        "live:\x1b]0;pwned\x07",
    )
    code, out, _ = verify(db_copy)
    assert code == EXIT_BROKEN
    assert "problem=unchained" in out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "forged\\x1b[2J" in out and "o\\u202e1" in out
    as_json = verify(db_copy, "--json")[1]
    assert "\x1b" not in as_json and "\u202e" not in as_json
    assert any(b["event_id"] == "forged\x1b[2J" for b in json.loads(as_json)["broken"])


def test_an_unreachable_database_is_one_line_and_exit_3(tmp_path: Path) -> None:
    env = {
        "EXECFLOW_DATABASE_URL": "postgresql+asyncpg://execflow:s3cret@127.0.0.1:9/execflow",
        "EXECFLOW_LOG_DIR": str(tmp_path / "logs"),
    }
    result = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("execflow: database unreachable or failing at ")
    assert "execflow:***@127.0.0.1:9" in lines[0] and "s3cret" not in lines[0]
    assert "Traceback" not in result.stderr
    failed = (tmp_path / "logs" / "provider_errors.log").read_text()
    assert "[PROCESS:FAILED]" in failed and "s3cret" not in failed
