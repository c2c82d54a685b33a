"""``execflow orders stuck``, ``execflow reconcile``'s stuck section and ``execflow order resolve``.

The listing runs on the embedded deployment's SQLite file (a ``memory://`` state store
is rebuilt from it); resolve needs shared backends, so its end-to-end test runs on
RabbitMQ + Redis + PostgreSQL (marker ``integration``).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import socket
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from execflow.backends.state import Write
from execflow.cli.app import app
from execflow.cli.resolve import os_user
from execflow.clock import FakeClock
from execflow.domain.codec import account_to_dict
from execflow.domain.enums import OrderStatus
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import NumericIds, OrderIntake
from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.domain.factories import account
from tests.pipeline.flow import ASK, QTY, SEED_FILE, SYMBOL, Flow

HOSTILE_ACCOUNT = "live:\x1b[2J\u202e66"
LONG_AGO = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)


def _env(settings: Settings) -> dict[str, str]:
    return {
        "EXECFLOW_BROKER_URL": settings.broker_url,
        "EXECFLOW_STATE_URL": settings.state_url,
        "EXECFLOW_DATABASE_URL": settings.database_url,
        "EXECFLOW_QUEUE_PREFIX": settings.queue_prefix,
        "EXECFLOW_LOG_DIR": str(settings.log_dir),
    }


async def _orders_left_unanswered(settings: Settings) -> list[str]:
    """Two market orders sent in 2020 that the LP never answered, in the SQLite file."""
    with setup_logging(settings, "intake", bridge=False) as logs:
        clock = FakeClock(LONG_AGO)
        async with open_services(settings, logs, clock=clock) as services:
            await apply_seed(await read_seed(SEED_FILE), services.state, services.database)
            hostile = account(account_id=HOSTILE_ACCOUNT)
            await services.state.commit(
                HOSTILE_ACCOUNT, [Write("account", HOSTILE_ACCOUNT, 0, account_to_dict(hostile))]
            )
            pipeline = EmbeddedPipeline(services, rebuild=False)  # no LP: nobody answers
            await pipeline.start()
            intake = OrderIntake(services, NumericIds())
            ids = []
            for user in ("live:6", HOSTILE_ACCOUNT):
                placed = await intake.open_market(user, SYMBOL, "BUY", QTY)
                assert placed.accepted and placed.order_id, placed
                ids.append(placed.order_id)
            await pipeline.drain()
            await pipeline.stop()
    return ids


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(
        log_dir=tmp_path / "logs", database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}"
    )


def test_orders_stuck_lists_from_the_database_and_escapes_outside_text(
    sqlite_settings: Settings,
) -> None:
    ids = asyncio.run(_orders_left_unanswered(sqlite_settings))
    env = _env(sqlite_settings)
    runner = CliRunner()
    listed = runner.invoke(app, ["orders", "stuck", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["order_id"] for r in rows) == sorted(ids)
    assert {r["account_id"] for r in rows} == {"live:6", HOSTILE_ACCOUNT}
    assert all(r["waiting_for"] == ["OPEN"] and r["status"] == "QUEUED" for r in rows)
    assert "\x1b" not in listed.stdout and "\u202e" not in listed.stdout
    assert "\\u001b[2J\\u202e66" in listed.stdout
    table = runner.invoke(app, ["orders", "stuck"], env={**env, "COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    assert "stuck orders: 2" in table.stdout and ids[0] in table.stdout
    assert "\x1b" not in table.stdout and "\u202e" not in table.stdout
    assert "live:\\x1b[2J\\u202e66" in table.stdout
    recent = runner.invoke(app, ["orders", "stuck", "--older-than", "1e12"], env=env)
    assert recent.exit_code == 0 and "stuck orders: none" in recent.stdout


def test_resolve_needs_shared_backends(sqlite_settings: Settings) -> None:
    result = CliRunner().invoke(
        app,
        ["order", "resolve", "3163458366000", "--as", "rejected", "--reason", "x"],
        env=_env(sqlite_settings),
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "memory://" in result.stderr


# -- on RabbitMQ + Redis + PostgreSQL ------------------------------------------------------------


@pytest.mark.integration
async def test_resolve_and_reconcile_from_the_cli_on_real_servers(
    real_services: Services, real_settings: Settings, tmp_path: Path
) -> None:
    env = {**_env(real_settings), "EXECFLOW_LOG_DIR": str(tmp_path / "cli-logs")}
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(app, list(args), env={**env, "COLUMNS": "400"})

    async with Flow.running(real_services) as flow:
        setup = await flow.open_request()
        reason = "LP desk\x1b[2J: never received"
        done = await asyncio.to_thread(
            cli, "order", "resolve", setup.order_id, "--as", "rejected",
            "--reason", reason, "--operator", "bob", "--json",
        )  # fmt: skip
        assert done.exit_code == 0, (done.stdout, done.stderr)
        shown = json.loads(done.stdout)
        assert (shown["status"], shown["worker"], shown["operator"]) == (
            "REJECTED",
            "reject",
            "bob",
        )
        assert shown["reason"] == reason and "\x1b" not in done.stdout
        await flow.settle()
        account = await flow.account()
        assert account.used_margin_all == 0 and account.reservations == ()
        events = await flow.events(setup.order_id)
        assert events[-1].kind == "ORDER_REJECTED"
        assert events[-1].payload["operator"] == {
            "name": "bob", "reason": reason, "resolution": "rejected",
        }  # fmt: skip
        again = await asyncio.to_thread(
            cli, "order", "resolve", setup.order_id, "--as", "cancelled", "--reason", "twice"
        )
        assert again.exit_code == 1
        refused = again.stderr.strip().splitlines()
        assert len(refused) == 1 and "order_final" in refused[0] and "REJECTED" in refused[0]
        other = await flow.open_request()
        by_default = await asyncio.to_thread(
            cli, "order", "resolve", other.order_id, "--as", "filled", "--price", ASK,
            "--reason", "LP statement",
        )  # fmt: skip
        assert by_default.exit_code == 0, by_default.stderr
        assert by_default.stderr == "" and "resolved" in by_default.stdout
        await flow.settle()
        assert (await flow.order(other.order_id)).status is OrderStatus.OPEN
        named = (await flow.events(other.order_id))[-1].payload["operator"]["name"]
        assert named == os_user() == pwd.getpwuid(os.geteuid()).pw_name
        checked = await asyncio.to_thread(cli, "reconcile")
        assert checked.exit_code == 0, checked.stdout
        assert "reconciliation: clean" in checked.stdout
        assert "stuck orders: none" in checked.stdout


@pytest.mark.integration
async def test_the_dispatcher_process_counts_stuck_orders_for_its_metric(
    real_services: Services, real_settings: Settings
) -> None:
    services = real_services
    await apply_seed(await read_seed(SEED_FILE), services.state, services.database)
    placed = await OrderIntake(services, NumericIds(5000000000000)).open_market(
        "live:6", SYMBOL, "BUY", QTY
    )
    assert placed.accepted, placed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        **_env(real_settings),
        "EXECFLOW_STUCK_AFTER_S": "0.5",
        "EXECFLOW_STUCK_CHECK_INTERVAL_S": "0.2",
        "EXECFLOW_METRICS_PORT": str(port),
        "EXECFLOW_SHUTDOWN_TIMEOUT_S": "2",
    }
    execflow = str(Path(sys.executable).with_name("execflow"))
    process = await asyncio.create_subprocess_exec(
        execflow, "run", "dispatcher", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    log = Path(real_settings.log_dir) / "dispatcher.log"
    try:
        async with asyncio.timeout(60):
            # another process writes the log and serves the page: poll both
            while "[STUCK:FOUND]" not in await asyncio.to_thread(_read, log):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            while (scraped := await asyncio.to_thread(_scrape, port)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await process.wait()
    assert code == 0, (await process.stderr.read()).decode()[-2000:] if process.stderr else ""
    assert "execflow_stuck_orders 1.0" in scraped
    line = next(x for x in _read(log).splitlines() if "[STUCK:FOUND]" in x)
    assert "WARNING" in line and f"oldest_order_id={placed.order_id}" in line


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _scrape(port: int) -> str | None:
    """The metrics page once the gauge shows a stuck order (None before)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            body: str = answer.read().decode()
    except OSError:
        return None
    return body if "execflow_stuck_orders 1.0" in body else None
