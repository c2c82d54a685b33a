"""The simulator survives a state-store outage (found by the Redis fault test).

Its price feed skips quotes it cannot store (the next tick writes them again) instead of
dying, and the scenario driver counts an intake call that failed on an outage as a
failed client request and goes on, instead of ending the whole run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from execflow.apps.scenario import ScenarioConfig
from execflow.apps.standalone import SimulateOptions, SimulateOutcome, simulate
from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.backends.memory_state import InMemoryStateStore
from execflow.errors import BusError, StoreError
from execflow.logs import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.config import LpConfig


class OutageState(InMemoryStateStore):
    """Every call fails while ``down`` (a Redis away), counted in ``failed``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failed = 0

    def _check(self) -> None:
        if self.down:
            self.failed += 1
            raise StoreError("Redis unreachable")

    async def put_price(self, symbol: str, data: dict[str, Any]) -> None:
        self._check()
        await super().put_price(symbol, data)

    async def get_order(self, account_id: str, order_id: str) -> Any:
        self._check()
        return await super().get_order(account_id, order_id)

    async def get_account(self, account_id: str) -> Any:
        self._check()
        return await super().get_account(account_id)


class InspectionOutageBus(InMemoryBus):
    """Queue inspection fails while ``down`` (the broker's management calls away)."""

    def __init__(self, names: QueueNames) -> None:
        super().__init__(names)
        self.down = False
        self.failed = 0

    async def queue_depth(self, queue: str) -> int:
        if self.down:
            self.failed += 1
            raise BusError("queue inspection failed", queue=queue)
        return await super().queue_depth(queue)


@pytest.fixture
async def sim_services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sim.db'}",
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.01,
        shutdown_timeout_s=2.0,
    )
    bus = InspectionOutageBus(QueueNames(settings.queue_prefix))
    with setup_logging(settings, "simulator", bridge=False) as logs:
        async with open_services(settings, logs, bus=bus, state=OutageState()) as services:
            yield services


class Switch(Protocol):
    down: bool


async def simulate_through(
    services: Services, switch: Switch, after_s: float, for_s: float
) -> SimulateOutcome | None:
    """A small embedded simulation while ``switch`` is down from ``after_s`` for ``for_s``."""
    pipeline = EmbeddedPipeline(services)
    await pipeline.start()
    options = SimulateOptions(
        lp=LpConfig(reject_rate=0.0),
        scenario=ScenarioConfig(orders=120, rate_per_s=200.0, settle_timeout_s=30.0),
        accounts=4,
        tick_interval_s=0.005,
    )

    async def outage() -> None:
        await asyncio.sleep(after_s)
        switch.down = True
        await asyncio.sleep(for_s)
        switch.down = False

    try:
        breaker = asyncio.create_task(outage())
        outcome = await simulate(services, options, asyncio.Event())
        await breaker
    finally:
        await pipeline.stop()
    return outcome


async def test_the_scenario_and_the_feed_go_on_through_a_state_store_outage(
    sim_services: Services,
) -> None:
    state = sim_services.state
    assert isinstance(state, OutageState)
    outcome = await simulate_through(sim_services, state, after_s=0.2, for_s=0.2)
    assert outcome is not None
    assert state.failed > 0
    refused = outcome.scenario.refused
    assert sum(n for reason, n in refused.items() if reason == "error:StoreError") > 0, refused
    assert outcome.scenario.orders_placed > 0
    assert outcome.reconciliation.ok, outcome.reconciliation.differences[:5]


async def test_the_scenario_waits_while_the_broker_cannot_report_its_backlog(
    sim_services: Services,
) -> None:
    bus = sim_services.bus
    assert isinstance(bus, InspectionOutageBus)
    outcome = await simulate_through(sim_services, bus, after_s=0.1, for_s=1.0)
    assert bus.failed > 0
    assert outcome is not None and outcome.scenario.settled
    assert outcome.reconciliation.ok
