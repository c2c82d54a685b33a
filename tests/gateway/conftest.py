"""Fixtures for the gateway tests: embedded services (in-memory bus and state, SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from execflow.logs import LogSystem, setup_logging
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast retries, logs and SQLite in tmp_path."""
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        retry_base_delay_s=0.01,
        retry_max_delay_s=0.05,
        shutdown_timeout_s=5.0,
    )


@pytest.fixture
def logs(settings: Settings) -> Iterator[LogSystem]:
    system = setup_logging(settings, "simulator")
    yield system
    system.close()


@pytest.fixture
async def services(settings: Settings, logs: LogSystem) -> AsyncIterator[Services]:
    async with open_services(settings, logs) as opened:
        yield opened


async def wait_for(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Poll ``check`` (sync or async) until it is truthy."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)
