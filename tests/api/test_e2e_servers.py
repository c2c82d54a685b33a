"""End to end on RabbitMQ + Redis + PostgreSQL: two API instances over one pipeline.

Orders placed over HTTP reach the LP simulator, the same Idempotency-Key sent to both
instances at once places one order (the claim is in PostgreSQL), a stream on one
instance sees what was placed on the other (woken through the RabbitMQ fanout), and the
books reconcile. The servers are shared: unique queue and key prefixes, a fresh
database, all removed at the end; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from execflow.api.keys import Scope, mint_key
from execflow.api.server import ApiServer, api_context
from execflow.backends.rabbitmq import RabbitMQBus
from execflow.logs.setup import setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator
from tests.api.sse import SseClient
from tests.backends.conftest import delete_queues, fresh_pg_database
from tests.services import AMQP_URL, REDIS_URL, need_service
from tests.sim.conftest import quiet_config

pytestmark = pytest.mark.integration

ACCOUNT = "live:1"


@dataclass
class Deployment:
    services: Services
    pipeline: EmbeddedPipeline
    sim: Simulator
    first: httpx.AsyncClient
    second: httpx.AsyncClient
    token: str


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    for name in ("rabbitmq", "redis", "postgresql"):
        need_service(name)
    tag = uuid.uuid4().hex[:10]
    declared: set[str] = set()
    async with fresh_pg_database() as pg_url:
        settings = Settings(
            log_dir=tmp_path / "logs",
            broker_url=AMQP_URL,
            state_url=f"{REDIS_URL}?key_prefix=efapi{tag}",
            database_url=pg_url,
            queue_prefix=f"efapi.{tag}",
            shutdown_timeout_s=2.0,
        )
        try:
            with setup_logging(settings, "api", bridge=False) as logs:
                async with open_services(settings, logs) as services:
                    try:
                        async with _deployed(services) as running:
                            yield running
                    finally:
                        await services.state.flush_all()
                        assert isinstance(services.bus, RabbitMQBus)
                        declared = set(services.bus.declared_queues)
        finally:
            await delete_queues(declared)  # the feed's exchange went with its listeners


@contextlib.asynccontextmanager
async def _deployed(services: Services) -> AsyncIterator[Deployment]:
    """The pipeline with the simulator, and two API instances on free ports."""
    sim = Simulator(services.bus, services.state, services.logger("simulator"), quiet_config())
    await apply_seed(demo_seed(3, random.Random(7), sim.feed), services.state, services.database)
    pipeline = EmbeddedPipeline(services, lp=sim)
    await pipeline.start()
    servers = [ApiServer(api_context(services), port=0) for _ in range(2)]
    for server in servers:
        server.context.readiness.state_rebuilt = True
        await server.start()
    minted = mint_key("e2e", [Scope.READ, Scope.TRADE], [ACCOUNT], services.clock.now())
    await servers[0].context.store.add_key(minted.record)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{servers[0].port}", timeout=30) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{servers[1].port}", timeout=30) as b,
        ):
            yield Deployment(services, pipeline, sim, a, b, minted.token)
    finally:
        for server in servers:
            await server.stop()
        await pipeline.stop()


async def _statuses(d: Deployment, order_ids: set[str], wanted: set[str]) -> None:
    headers = {"Authorization": f"Bearer {d.token}"}
    async with asyncio.timeout(60):
        while True:
            found = [
                (await d.second.get(f"/v1/orders/{o}", headers=headers)).json()["status"]
                for o in order_ids
            ]
            if set(found) <= wanted:
                return
            await asyncio.sleep(0.1)


async def test_two_instances_one_pipeline_on_the_real_servers(deployment: Deployment) -> None:
    d = deployment
    auth = {"Authorization": f"Bearer {d.token}"}
    stream = SseClient(d.second, d.token)
    stream.start()
    await stream.wait_ready()
    body = {"account_id": ACCOUNT, "symbol": "EURUSD", "side": "BUY", "qty": "0.10"}
    same = {**auth, "Idempotency-Key": "both-instances"}
    twins = await asyncio.gather(
        *(c.post("/v1/orders", json=body, headers=same) for c in (d.first, d.second) * 3)
    )
    assert {t.status_code for t in twins} == {201} and len({t.content for t in twins}) == 1
    placed = {twins[0].json()["order_id"]}
    for n in range(5):
        side = "SELL" if n % 2 else "BUY"
        answer = await d.first.post(
            "/v1/orders", json={**body, "side": side}, headers={**auth, "Idempotency-Key": f"o{n}"}
        )
        assert answer.status_code == 201, answer.text
        placed.add(answer.json()["order_id"])
    await _statuses(d, placed, {"OPEN"})
    for order_id in placed:
        closing = await d.second.post(
            f"/v1/orders/{order_id}/close", headers={**auth, "Idempotency-Key": f"c{order_id}"}
        )
        assert closing.status_code == 202, closing.text
    await _statuses(d, placed, {"CLOSED"})
    await stream.wait_for("ORDER_CLOSED", timeout_s=30)
    async with asyncio.timeout(30):
        while sum(m["data"]["kind"] == "ORDER_CLOSED" for m in stream.events()) < len(placed):
            await stream.wait_for("ORDER_CLOSED")
            await asyncio.sleep(0.05)
    await stream.drop()
    await d.sim.lp.idle()
    await d.pipeline.drain(timeout_s=60)
    report = await reconcile(d.services.database, d.services.state)
    assert report.ok, report.differences
    assert report.orders == len(placed) == 6
    chain = [m["data"]["chain_seq"] for m in stream.events()]
    assert chain == list(range(1, len(chain) + 1))  # every event of the account, in order
