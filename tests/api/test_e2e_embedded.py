"""End to end, embedded: orders over real HTTP (uvicorn on a free port) reach the LP
simulator through the pipeline, and the books reconcile."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from execflow.api.keys import Scope, mint_key
from execflow.api.server import ApiServer, api_context
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from tests.sim.conftest import quiet_config

FINAL = {"CLOSED", "CANCELLED", "REJECTED"}


@dataclass
class Served:
    services: Services
    client: httpx.AsyncClient
    accounts: list[str]
    pipeline: EmbeddedPipeline
    sim: Simulator


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """Pipeline + simulator (partial fills, acks) + the API under uvicorn, one process."""
    settings = Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        api_port=0,
    )
    with setup_logging(settings, "api", bridge=False) as logs:
        async with open_services(settings, logs) as services:
            lp = quiet_config(partial_rate=0.3, ack_rate=0.3)
            sim = Simulator(services.bus, services.state, logs.logger("simulator"), lp, seed=9)
            seed = demo_seed(4, random.Random(2), sim.feed)
            await apply_seed(seed, services.state, services.database)
            pipeline = EmbeddedPipeline(services, lp=sim, rebuild=False)
            await pipeline.start()
            context = api_context(services)
            context.readiness.state_rebuilt = True
            server = ApiServer(context, port=0)
            await server.start()
            minted = mint_key("e2e", [Scope.READ, Scope.TRADE], ["*"], services.clock.now())
            await context.store.add_key(minted.record)
            headers = {"Authorization": f"Bearer {minted.token}"}
            base = f"http://127.0.0.1:{server.port}"
            try:
                async with httpx.AsyncClient(base_url=base, headers=headers) as client:
                    accounts = [a.account_id for a in seed.accounts]
                    yield Served(services, client, accounts, pipeline, sim)
            finally:
                await server.stop()
                await pipeline.stop()


async def _until(served: Served, done: set[str], statuses: set[str]) -> dict[str, dict[str, Any]]:
    """Poll the API until every order in ``done`` has one of ``statuses``."""
    async with asyncio.timeout(30):
        while True:
            seen: dict[str, dict[str, Any]] = {}
            for order_id in done:
                seen[order_id] = (await served.client.get(f"/v1/orders/{order_id}")).json()
            if all(o["status"] in statuses for o in seen.values()):
                return seen
            await asyncio.sleep(0.05)


async def test_orders_over_http_reach_the_simulator_and_the_books_reconcile(
    served: Served,
) -> None:
    client = served.client
    quotes = {q["symbol"]: q for q in (await client.get("/v1/quotes")).json()["items"]}
    bid = Decimal(quotes["EURUSD"]["bid"])
    market: set[str] = set()
    pending: set[str] = set()
    for n, account in enumerate(served.accounts * 3):
        side = "BUY" if n % 2 else "SELL"
        sign = Decimal(-1) if side == "BUY" else Decimal(1)
        body = {
            "account_id": account,
            "symbol": "EURUSD",
            "side": side,
            "qty": "0.10",
            "sl": str((bid + sign * Decimal("0.01")).quantize(Decimal("0.00001"))),
            "tp": str((bid - sign * Decimal("0.01")).quantize(Decimal("0.00001"))),
        }
        placed = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": f"m{n}"})
        assert placed.status_code == 201, placed.text
        market.add(placed.json()["order_id"])
    for n, account in enumerate(served.accounts):
        far = str((bid - Decimal("0.02")).quantize(Decimal("0.00001")))
        body = {
            "account_id": account,
            "symbol": "EURUSD",
            "side": "BUY",
            "type": "BUY_LIMIT",
            "qty": "0.10",
            "price": far,
        }
        placed = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": f"p{n}"})
        assert placed.status_code == 201, placed.text
        pending.add(placed.json()["order_id"])
    opened = await _until(served, market, {"OPEN"})
    assert all(
        o["sl"]["state"] == "ACTIVE" or o["sl"]["state"] == "REQUESTED" for o in opened.values()
    )
    await _until(served, pending, {"PENDING"})
    for order_id in market:
        closing = await client.post(
            f"/v1/orders/{order_id}/close", headers={"Idempotency-Key": f"c{order_id}"}
        )
        assert closing.status_code == 202, closing.text
    for order_id in pending:
        cancelling = await client.post(
            f"/v1/orders/{order_id}/cancel", headers={"Idempotency-Key": f"x{order_id}"}
        )
        assert cancelling.status_code == 202, cancelling.text
    final = await _until(served, market | pending, FINAL)
    assert {o["status"] for o in final.values()} == {"CLOSED", "CANCELLED"}
    # the books: every account recomputed from the database's events matches the state
    await served.sim.lp.idle()
    await served.pipeline.drain(timeout_s=30)
    report = await reconcile(served.services.database, served.services.state)
    assert report.ok, report.differences
    assert report.orders == len(market) + len(pending)
    listed = await client.get("/v1/orders?status=CLOSED&limit=500")
    assert {o["order_id"] for o in listed.json()["items"]} == market
