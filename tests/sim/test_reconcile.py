"""Reconciliation: clean after a real embedded run, and every injected difference is found."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from execflow.backends.state import Write
from execflow.domain.enums import Side
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from tests.sim.conftest import quiet_config


@dataclass
class Traded:
    services: Services
    open_order: str
    account_id: str


@pytest.fixture
async def traded(tmp_path: Path) -> AsyncIterator[Traded]:
    """An embedded pipeline after a few orders: one position left open, the rest closed."""
    settings = Settings(
        log_dir=tmp_path / "logs", database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    )
    with setup_logging(settings, "simulator", bridge=False) as logs:
        async with open_services(settings, logs) as services:
            sim = Simulator(
                services.bus, services.state, logs.logger("simulator"), quiet_config(), seed=3
            )
            seed = demo_seed(3, random.Random(1), sim.feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, lp=sim, rebuild=False)
            await pipeline.start()
            intake = OrderIntake(services)
            account = seed.accounts[0].account_id
            opened = []
            for symbol in ("EURUSD", "USDJPY", "XAUUSD"):
                result = await intake.open_market(account, symbol, Side.BUY, "0.10")
                assert result.accepted, result.reason
                opened.append(result.order_id or "")
            await pipeline.drain(timeout_s=30)
            for order_id in opened[1:]:
                assert (await intake.close(order_id)).accepted
            await pipeline.drain(timeout_s=30)
            await sim.lp.idle()
            await pipeline.drain(timeout_s=30)
            yield Traded(services, opened[0], account)
            await pipeline.stop()


async def test_a_real_run_reconciles_clean(traded: Traded) -> None:
    report = await reconcile(traded.services.database, traded.services.state)
    assert report.ok, report.differences
    assert report.accounts == 3 and report.orders == 3 and report.events >= 9


async def test_a_changed_balance_and_a_lost_position_are_reported(traded: Traded) -> None:
    state = traded.services.state
    found = await state.get_account(traded.account_id)
    assert found is not None
    tampered = dict(found.data)
    tampered["balance"] = str(Decimal(tampered["balance"]) + Decimal("0.01"))
    tampered["positions"] = []
    await state.commit(
        traded.account_id, [Write("account", traded.account_id, found.version, tampered)]
    )
    report = await reconcile(traded.services.database, state)
    found_diffs = {(d.what, d.order_id) for d in report.differences}
    assert ("balance", None) in found_diffs
    assert ("open position", traded.open_order) in found_diffs
    balance = next(d for d in report.differences if d.what == "balance")
    assert Decimal(balance.actual) - Decimal(balance.expected) == Decimal("0.01")


async def test_an_order_whose_state_moved_without_an_event_is_reported(traded: Traded) -> None:
    state = traded.services.state
    doc = await state.get_order(traded.account_id, traded.open_order)
    assert doc is not None
    moved = dict(doc.data)
    moved["status"] = "CLOSED"
    await state.commit(traded.account_id, [Write("order", traded.open_order, doc.version, moved)])
    report = await reconcile(traded.services.database, state)
    assert [(d.what, d.expected, d.actual) for d in report.differences] == [
        ("order status", "OPEN", "CLOSED")
    ]
