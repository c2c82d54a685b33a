"""Every read command, over hostile values, prints no raw control character (text and JSON).

Hostile strings (ESC sequences, the 8-bit CSI, NEL, U+2028/2029, DEL, bidi overrides,
zero-width and BOM characters, Rich markup) are put where outside data lives: dead
letters, accounts, orders and events in the database, documents in the state store
(Redis, a key prefix of its own), and the log files (written by the logging layer in both
formats, and raw lines as anyone who can write the file could). Each command is then run
in text and, where it has one, JSON mode. ``READ_COMMANDS`` and ``NOT_READ`` together
must list every command of the Typer app (``test_every_command_is_covered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aio_pika
import orjson
import pytest
from typer.testing import CliRunner

from execflow.backends.bus import H_ERROR, H_ORIGINAL_QUEUE, H_REASON, H_TRACE_ID, QueueNames
from execflow.backends.database import AccountRecord, DeadLetterRecord, EventRecord, OrderRecord
from execflow.backends.redis_state import RedisStateStore
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.backends.state import Write
from execflow.cli.app import app
from execflow.domain.codec import account_to_dict, instrument_to_dict, order_to_dict
from execflow.domain.enums import LpOrderType, OrderStatus, RequestKind, Side
from execflow.domain.lpquality import ExecutionStatus, LpExecution
from execflow.logs import setup_logging
from execflow.settings import Settings
from tests.cli.commands import leaf_commands
from tests.domain.factories import EURUSD, account, market_order
from tests.hostile import HOSTILE, raw_controls
from tests.services import AMQP_URL, REDIS_URL, need_service

pytestmark = pytest.mark.integration

ORDER_ID = "3163458366000"
WAITING_ID = "3163458366001"  # QUEUED since 2026-11-29: stuck
ACCOUNT_ID = f"live:{HOSTILE}"
TRACE_ID = f"tr-{HOSTILE}"
# command -> argument lists to run; "{logs}", "{out}", "{seed}" are filled in by the test
READ_COMMANDS: dict[str, list[list[str]]] = {
    "dlq list": [[], ["--json"], ["--all", "--reason", HOSTILE]],
    "dlq replay": [["--dry-run"], []],
    "reconcile": [[]],
    "state rebuild": [[]],
    "seed": [["{seed}"]],
    "order open": [
        [ACCOUNT_ID, "EURUSD", "BUY", "0.10"], [ACCOUNT_ID, "EURUSD", "BUY", "0.10", "--json"]
    ],
    "order pending": [[ACCOUNT_ID, HOSTILE, "BUY_LIMIT", "0.10", "1.08"]],
    "order modify": [[ORDER_ID, "1.08100"], [ORDER_ID, "1.08100", "--json"]],
    "order cancel": [[ORDER_ID], [ORDER_ID, "--json"]],
    "order close": [[ORDER_ID], [ORDER_ID, "--json"]],
    "order sl": [[ORDER_ID, "1.08200"], [ORDER_ID, "--cancel", "--json"]],
    "order tp": [[ORDER_ID, "1.09500"], [ORDER_ID, "--cancel", "--json"]],
    "orders stuck": [[], ["--json"]],
    "order show": [[ORDER_ID], [ORDER_ID, "--json"]],
    "account show": [[ACCOUNT_ID], [ACCOUNT_ID, "--json"]],
    "orders list": [[], ["--json"], ["--account", ACCOUNT_ID, "--limit", "5"]],
    "order resolve": [
        [WAITING_ID, "--as", "rejected", "--reason", HOSTILE, "--operator", HOSTILE],
        [WAITING_ID, "--as", "filled", "--price", "1.1", "--reason", HOSTILE, "--json"],
    ],
    "audit verify": [[], ["--json"]],
    "lp quality": [[], ["--json"], ["--lp", HOSTILE, "--since", "2026-11-01"]],
    # create first: `list` then shows the key it stored (parameters run in this order)
    "api-key create": [
        ["--name", HOSTILE, "--scopes", "read", "--accounts", ACCOUNT_ID],
        ["--name", HOSTILE, "--scopes", "read", "--accounts", ACCOUNT_ID, "--json"],
    ],
    "api-key list": [[], ["--json"]],
    "api-key revoke": [[HOSTILE]],
    "logs trace": [[ORDER_ID, "--dir", "{logs}"], [ORDER_ID, "--json", "--dir", "{logs}"]],
    "logs stats": [["--dir", "{logs}"], ["--json", "--dir", "{logs}"]],
    "logs tail": [["--lines", "100", "--max-seconds", "0.3", "--dir", "{logs}"]],
    "logs errors": [["--dir", "{logs}"], ["--json", "--dir", "{logs}"]],
    "logs report": [["--out", "{out}", "--dir", "{logs}"]],
    "logs check": [[]],
    "logs cleanup": [["--dry-run"]],
    "config": [[]],
    "version": [[]],
    "demo": [["--orders", "20", "--accounts", "2", "--dir", "{demo}"]],
}  # fmt: skip
# Commands where the hostile marker must show up (escaped): the value did reach the output.
SHOWS_HOSTILE = {
    "dlq list", "dlq replay", "reconcile", "seed", "order pending", "orders stuck",
    "order resolve", "audit verify", "lp quality", "order show", "account show", "orders list",
    "api-key create", "api-key list", "api-key revoke",
    "logs trace", "logs stats", "logs tail", "logs errors", "config",
}  # fmt: skip
NOT_READ = {
    "run dispatcher": "long-running; prints only its failure line (tests/cli/test_failures.py)",
    "run worker": "long-running; prints only its failure line (tests/cli/test_failures.py)",
    "run db-writer": "long-running; prints only its failure line (tests/cli/test_failures.py)",
    "run lp-gateway": (
        "long-running; prints only its failure line (test_failures.py); the LP's text goes"
        " to its log, escaped by the line formatter"
    ),
    "run all": "supervisor; prints nothing, its children log to files",
    "bench": "prints only figures it measured itself, no outside data",
    "run api": "long-running; prints its listening line, or its failure line (test_failures.py)",
    "serve": "long-running; prints its listening line, or its failure line (test_failures.py)",
    "simulate": (
        "its summary is its own counts plus render_reconciliation, covered by `reconcile`"
        " here; a scenario needs a running pipeline (tests/faults/test_sim_outage.py)"
    ),
}


def test_every_command_is_covered() -> None:
    assert leaf_commands() == set(READ_COMMANDS) | set(NOT_READ)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A run directory whose database, state store and logs hold hostile values."""
    need_service("redis")
    root = tmp_path_factory.mktemp("hostile")
    prefix = f"hostile{uuid.uuid4().hex[:8]}"
    (root / "prefix").write_text(prefix)
    settings = Settings(
        log_dir=root / "logs",
        database_url=f"sqlite+aiosqlite:///{root / 'x.db'}",
        state_url=f"{REDIS_URL}?key_prefix={prefix}",
    )
    asyncio.run(_fill_stores(settings, prefix))
    _fill_logs(settings, root / "logs")
    seed = {
        "accounts": [
            {
                "account_id": f"demo:{HOSTILE}",
                "currency": "USD",
                "balance": "100",
                "leverage": 100,
                "group": HOSTILE,
            }
        ]
    }
    (root / "seed.json").write_text(json.dumps(seed))
    # a link of the audit chain edited by hand: `audit verify` names it
    with sqlite3.connect(root / "x.db") as conn:
        conn.execute("UPDATE order_events SET kind = ? WHERE order_id = ?", ("edited", ORDER_ID))
    yield root
    asyncio.run(_flush(prefix))


async def _flush(prefix: str) -> None:
    state = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await state.connect()
    try:
        await state.flush_all()
    finally:
        await state.close()
    # `order resolve` ran on the real broker under this prefix
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for queue in QueueNames(prefix).all():
            channel = await connection.channel()
            with contextlib.suppress(Exception):  # never declared
                await channel.queue_delete(queue)
    finally:
        await connection.close()


async def _fill_stores(settings: Settings, prefix: str) -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    holder = account(account_id=ACCOUNT_ID, group=HOSTILE)
    order = market_order(
        order_id=ORDER_ID,
        account_id=ACCOUNT_ID,
        group=HOSTILE,
        symbol=HOSTILE,
        status=OrderStatus.OPEN,
        lifecycle_id=f"{ORDER_ID}-{HOSTILE}",
    )
    order_doc = order_to_dict(order)
    waiting = replace(
        order, order_id=WAITING_ID, status=OrderStatus.QUEUED, lifecycle_id=f"lc-{HOSTILE}"
    )
    account_doc = account_to_dict(holder)
    database = SqlDatabase(settings.database_url)
    await database.connect()
    try:
        await database.upsert_accounts([AccountRecord(ACCOUNT_ID, 1, account_doc)])
        await database.upsert_orders([OrderRecord(ORDER_ID, ACCOUNT_ID, HOSTILE, 1, order_doc)])
        await database.insert_events(
            [
                EventRecord(
                    event_id=f"ev-{HOSTILE}",
                    order_id=ORDER_ID,
                    account_id=ACCOUNT_ID,
                    kind=HOSTILE,
                    payload={
                        "account": {**account_doc, "version": 2, "balance": "99.5"},
                        "order": {**order_doc, "status": HOSTILE, "version": 3},
                        "deltas": {"balance": "-0.5"},
                    },
                    exec_id=HOSTILE,
                )
            ]
        )
        body = orjson.dumps({"order_id": ORDER_ID, "text": HOSTILE, "clordid": HOSTILE})
        for _ in range(2):
            await database.insert_dead_letter(
                DeadLetterRecord(
                    queue=HOSTILE,
                    reason=HOSTILE,
                    body=body,
                    headers={
                        H_TRACE_ID: TRACE_ID,
                        H_REASON: HOSTILE,
                        H_ERROR: HOSTILE,
                        H_ORIGINAL_QUEUE: HOSTILE,
                    },
                    error=HOSTILE,
                    attempts=3,
                    created_at=now,
                )
            )
        # an LP's own reject text, and an LP name from the settings file
        refused = LpExecution(
            lifecycle_id=f"lc-{HOSTILE}",
            lp=HOSTILE,
            order_id=ORDER_ID,
            account_id=ACCOUNT_ID,
            kind=RequestKind.OPEN,
            symbol=HOSTILE,
            side=Side.BUY,
            order_type=LpOrderType.MARKET,
            qty=Decimal("0.10"),
            sent_at=now,
            status=ExecutionStatus.REJECTED,
            first_report_at=now,
            done_at=now,
            reject_reason=HOSTILE,
        )
        await SqlLpExecutionStore(database).upsert([refused])
    finally:
        await database.close()
    state = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await state.connect()
    try:
        state_account = replace(holder, balance=holder.balance + 1)
        await state.commit(
            ACCOUNT_ID,
            [
                Write("account", ACCOUNT_ID, 0, account_to_dict(state_account)),
                Write("order", ORDER_ID, 0, order_doc),
                Write("order", WAITING_ID, 0, order_to_dict(waiting)),
            ],
        )
        for order_id in (ORDER_ID, WAITING_ID):
            await state.put_lifecycle(order_id, {"account_id": ACCOUNT_ID, "order_id": order_id})
        await state.put_instrument(
            HOSTILE, "EURUSD", instrument_to_dict(replace(EURUSD, group=HOSTILE))
        )
    finally:
        await state.close()


def _fill_logs(settings: Settings, logs: Path) -> None:
    for log_format, instance in (("text", 1), ("json", 2)):
        own = settings.model_copy(update={"log_format": log_format, "instance": instance})
        with setup_logging(own, "worker_close", bridge=False) as system:
            log = system.logger("worker_close")
            log.info(f"CLOSE:{HOSTILE}", order_id=ORDER_ID, trace_id=TRACE_ID, note=HOSTILE)
            log.success("CLOSE:SUCCESS", order_id=ORDER_ID, processing_time_ms=1.5, x=HOSTILE)
            log.dead_lettered("CLOSE:DLQ", reason=HOSTILE, order_id=ORDER_ID, trace_id=TRACE_ID)
            try:
                raise RuntimeError(HOSTILE)
            except RuntimeError as exc:
                log.error("CLOSE:ERROR", exc=exc, order_id=ORDER_ID, trace_id=TRACE_ID)
            system.flush()
    # Lines nobody's writer escaped: whoever can write the file chooses every byte.
    raw_text = (
        f"2026-12-05T10:00:00.000000Z ERROR{HOSTILE.replace(' ', '')} provider.dispatcher"
        f"\x1b[2J [DISPATCH:{HOSTILE.replace(']', '')}] order_id={ORDER_ID} "
        f"error_type=Boom\x9b error=\x1b[31mred trace_id={TRACE_ID.replace(' ', '')}\n"
    )
    raw_json = orjson.dumps(
        {
            "@timestamp": "2026-12-05T10:00:01.000000Z",
            "log.level": "ERROR",
            "log.logger": f"provider.{HOSTILE}",
            "event.action": HOSTILE,
            "order_id": ORDER_ID,
            "error.type": HOSTILE,
            "error.message": HOSTILE,
            "error.stack_trace": f"Traceback\n  {HOSTILE}\n",
        }
    ).decode()
    with (logs / "dispatcher.log").open("a") as file:
        file.write(raw_text)
        file.write(raw_json.replace("\\u001b", "\x1b") + "\n")


def _cases() -> list[tuple[str, list[str]]]:
    return [(command, args) for command, variants in READ_COMMANDS.items() for args in variants]


@pytest.mark.parametrize(("command", "args"), _cases(), ids=lambda v: str(v)[:40])
def test_no_raw_control_character_reaches_the_terminal(
    hostile: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
    args: list[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("EXECFLOW_"):
            monkeypatch.delenv(name)
    prefix = _prefix_of(hostile)
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(hostile / "logs"))
    monkeypatch.setenv("EXECFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{hostile / 'x.db'}")
    monkeypatch.setenv("EXECFLOW_STATE_URL", f"{REDIS_URL}?key_prefix={prefix}")
    monkeypatch.setenv("EXECFLOW_METRICS_HOST", HOSTILE)  # free text, unused: no metrics_port
    monkeypatch.setenv("COLUMNS", "400")
    if command == "order resolve":
        # resolve refuses memory:// backends: it must reach the deployment's broker
        need_service("rabbitmq")
        monkeypatch.setenv("EXECFLOW_BROKER_URL", AMQP_URL)
        monkeypatch.setenv("EXECFLOW_QUEUE_PREFIX", prefix)
    out = tmp_path / "report.html"
    places = {
        "{logs}": hostile / "logs",
        "{out}": out,
        "{seed}": hostile / "seed.json",
        "{demo}": tmp_path / "demo",
    }
    filled = [str(places.get(a, a)) for a in args]
    result = CliRunner().invoke(app, [*command.split(), *filled])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stdout, result.stderr)
    for stream in (result.stdout, result.stderr):
        assert raw_controls(stream) == [], stream
    if command in SHOWS_HOSTILE:
        assert "HOSTILE" in result.stdout + result.stderr
    if "--json" in args and result.exit_code in (0, 1) and result.stdout.strip():
        text = result.stdout
        documents = [json.loads(text)] if text.lstrip().startswith("{\n") else [
            json.loads(line) for line in text.splitlines() if line.strip()
        ]  # fmt: skip
        assert documents
        if command in SHOWS_HOSTILE:
            assert any(HOSTILE in text for text in _strings(documents))
    if command == "logs report":
        page = out.read_text()
        assert raw_controls(page) == []
        assert "HOSTILE" in page


def _strings(value: object) -> Iterator[str]:
    """Every string in a decoded JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _prefix_of(root: Path) -> str:
    return (root / "prefix").read_text()
