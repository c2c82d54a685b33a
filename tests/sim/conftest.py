"""Fixtures for the simulator tests: a fake clock, seeded feeds and an LP on the memory bus."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import FakeClock, SequentialIds
from execflow.logs.events import EventLogger
from execflow.logs.setup import LogSystem, setup_logging
from execflow.settings import Settings
from execflow.sim.book import LpBook
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.feed import PriceFeed, SymbolSpec

EURUSD = SymbolSpec("EURUSD", Decimal("1.10000"), Decimal("0.00001"), 2, 3.0)
NO_LATENCY = LatencyModel(0, 0, 0)


class PriceSinkRecorder:
    """A price sink that keeps every quote it was given."""

    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, symbol: str, data: dict[str, Any]) -> None:
        self.written.append((symbol, data))


def quiet_config(**overrides: Any) -> LpConfig:
    """An LP without latency, slippage, acks or noise unless asked."""
    base: dict[str, Any] = {
        "latency": NO_LATENCY,
        "ack_rate": 0.0,
        "slippage_rate": 0.0,
        "reorder_window_ms": 0.0,
    }
    base.update(overrides)
    return LpConfig(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> PriceSinkRecorder:
    return PriceSinkRecorder()


@pytest.fixture
def feed(clock: FakeClock, sink: PriceSinkRecorder) -> PriceFeed:
    return PriceFeed([EURUSD], sink, random.Random(7), clock)


def make_book(clock: FakeClock, **overrides: Any) -> LpBook:
    return LpBook(quiet_config(**overrides), random.Random(11), clock, SequentialIds("run"))


@pytest.fixture
def log_system(tmp_path: Path) -> Iterator[LogSystem]:
    system = setup_logging(Settings(log_dir=tmp_path / "logs"), "simulator", bridge=False)
    try:
        yield system
    finally:
        system.close()


@pytest.fixture
def sim_log(log_system: LogSystem) -> EventLogger:
    return log_system.logger("simulator")


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    memory = InMemoryBus(QueueNames("simtest"), prefetch=16, crash_requeue_delay_s=0.01)
    await memory.connect()
    yield memory
    await memory.close()
