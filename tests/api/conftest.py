"""Fixtures for the platform API: the app on in-memory bus and state, SQLite, httpx in-process.

``Api`` bundles the app, its context and keys minted straight into the store (scrypt is
slow on purpose: each key costs tens of ms, so tests mint only the few they need).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from execflow.api.app import create_app
from execflow.api.context import ApiContext
from execflow.api.keys import Scope, mint_key
from execflow.api.server import api_context
from execflow.backends.bus import QueueNames
from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import FakeClock, SequentialIds
from execflow.logs import LogSystem, setup_logging
from execflow.pipeline.intake import NumericIds, OrderIntake
from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from tests.domain.factories import NOW
from tests.pipeline.flow import SEED_FILE

API_FIRST_ID = 5_000_000_000_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        retry_base_delay_s=0.001,
        retry_max_delay_s=0.004,
        retry_jitter=0.0,
        shutdown_timeout_s=2.0,
        api_idempotency_wait_s=2.0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def logs(settings: Settings, clock: FakeClock) -> Iterator[LogSystem]:
    system = setup_logging(settings, "api", clock=clock, bridge=False)
    yield system
    system.close()


@pytest.fixture
def bus(settings: Settings, clock: FakeClock) -> InMemoryBus:
    return InMemoryBus(QueueNames(settings.queue_prefix), clock=clock, ids=SequentialIds("msg"))


@pytest.fixture
async def services(
    settings: Settings, logs: LogSystem, clock: FakeClock, bus: InMemoryBus
) -> AsyncIterator[Services]:
    async with open_services(
        settings, logs, clock=clock, ids=SequentialIds("trace"), bus=bus
    ) as opened:
        await apply_seed(await read_seed(SEED_FILE), opened.state, opened.database)
        yield opened


@dataclass
class Api:
    """The app under test, an httpx client on it, and helpers to mint keys."""

    context: ApiContext
    client: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)

    async def key(self, scopes: str, accounts: str = "live:6", name: str = "test") -> str:
        """A token with ``scopes`` (``read,trade``) on ``accounts`` (``live:6,live:7``)."""
        cache_key = f"{scopes}|{accounts}"
        if cache_key not in self.tokens:
            minted = mint_key(
                name,
                [Scope(s) for s in scopes.split(",") if s],
                accounts.split(","),
                self.context.services.clock.now(),
            )
            await self.context.store.add_key(minted.record)
            self.tokens[cache_key] = minted.token
        return self.tokens[cache_key]

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        json: Any = None,
        idempotency_key: str | None = "auto",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request; mutating ones get a fresh Idempotency-Key unless told otherwise."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if method != "GET" and idempotency_key is not None:
            sent["Idempotency-Key"] = (
                str(uuid.uuid4()) if idempotency_key == "auto" else idempotency_key
            )
        return await self.client.request(method, path, json=json, headers=sent)


def make_app(services: Services, intake: OrderIntake | None = None) -> ApiContext:
    """A context on ``services`` (one per simulated API instance)."""
    # order ids apart from the ones tests.pipeline.flow.Flow's own intake hands out
    context = api_context(services, intake or OrderIntake(services, NumericIds(API_FIRST_ID)))
    context.readiness.state_rebuilt = True
    return context


@pytest.fixture
async def api(services: Services) -> AsyncIterator[Api]:
    context = make_app(services)
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Api(context, client)
    await context.idempotency.close()
    await context.intake.shutdown(1.0)
