"""``order show``, ``account show``, ``orders list``: the API's queries and bodies, on the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from execflow.cli.app import app as cli_app
from execflow.logs import setup_logging
from execflow.pipeline.services import open_services
from execflow.settings import Settings
from tests.pipeline.flow import Flow


async def _trade(settings: Settings) -> tuple[str, str]:
    """One open position and one queued order of live:6, written to the database."""
    with setup_logging(settings, "api", bridge=False) as logs:
        async with open_services(settings, logs) as services, Flow.running(services) as flow:
            opened = await flow.opened()
            queued = await flow.open_request()
            await flow.settle()
            return opened.order_id, queued.order_id


def test_the_cli_reads_what_the_api_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    settings = Settings(log_dir=tmp_path / "logs", database_url=database)
    opened, queued = asyncio.run(_trade(settings))
    monkeypatch.setenv("EXECFLOW_DATABASE_URL", database)
    monkeypatch.setenv("EXECFLOW_LOG_DIR", str(tmp_path / "cli-logs"))
    runner = CliRunner()

    shown = runner.invoke(cli_app, ["order", "show", opened, "--json"])
    assert shown.exit_code == 0, shown.output
    body = orjson.loads(shown.output)
    assert body["order"]["status"] == "OPEN" and body["order"]["open_price"] == "1.08508"
    assert [e["kind"] for e in body["events"]] == ["ORDER_SUBMITTED", "ORDER_OPENED"]
    assert [e["chain_seq"] for e in body["events"]] == [1, 2]
    text = runner.invoke(cli_app, ["order", "show", opened])
    assert text.exit_code == 0 and "ORDER_OPENED" in text.output and "1.08508" in text.output
    assert runner.invoke(cli_app, ["order", "show", "999"]).exit_code == 1

    account = runner.invoke(cli_app, ["account", "show", "live:6", "--json"])
    assert account.exit_code == 0, account.output
    doc = orjson.loads(account.output)
    assert doc["balance"] == "10000.00"
    assert [p["order_id"] for p in doc["positions"]] == [opened]
    assert runner.invoke(cli_app, ["account", "show", "live:99"]).exit_code == 1

    listed = runner.invoke(cli_app, ["orders", "list", "--account", "live:6", "--json"])
    assert [o["order_id"] for o in orjson.loads(listed.output)["items"]] == [queued, opened]
    only_open = runner.invoke(cli_app, ["orders", "list", "--status", "OPEN", "--json"])
    assert [o["order_id"] for o in orjson.loads(only_open.output)["items"]] == [opened]
    paged = runner.invoke(cli_app, ["orders", "list", "--limit", "1"])
    assert paged.exit_code == 0 and f"--cursor {queued}" in paged.output
