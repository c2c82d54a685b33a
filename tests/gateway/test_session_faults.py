"""Session faults on real QuickFIX sessions: dropped connections, a gateway killed -9.

Nothing is lost (every request answered, every report published) and nothing is applied
twice (a re-sent report keeps its exec_id; a re-sent request is never a second order).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import quickfix as fix

from execflow.apps.scenario import ScenarioConfig, ScenarioDriver
from execflow.backends.bus import Delivery
from execflow.clock import UuidIds
from execflow.domain.codec import request_to_dict
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.messages import ProviderRequest
from execflow.logs import LogSystem, setup_logging
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services, open_services
from execflow.settings import Settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.fixlp import FixLpSession, FixSimulator
from execflow.sim.refdata import demo_seed
from execflow.sim.viafix import ViaFix, free_port
from tests.gateway.conftest import wait_for
from tests.gateway.test_processes import records

EXECFLOW = str(Path(sys.executable).with_name("execflow"))


@pytest.mark.slow
async def test_the_lp_drops_the_connection_mid_stream_and_nothing_is_lost(
    services: Services, tmp_path: Path
) -> None:
    lp = LpConfig(latency=LatencyModel(0.2, 1, 3), partial_rate=0.2, reject_rate=0.03)
    via = ViaFix(services, lp, tmp_path / "fix", seed=3)
    rng = random.Random(4)
    seed = demo_seed(6, rng, via.feed)
    await apply_seed(seed, services.state, services.database)
    pipeline = EmbeddedPipeline(services, lp=via, rebuild=False)
    await pipeline.start()
    intake = OrderIntake(services)
    lp_side = fix.SessionID("FIX.4.4", "SIMLP", "EXECFLOW")

    async def logged_on() -> fix.Session:
        # a drop counts only on a live session: on a busy machine the gateway may not
        # have logged on again yet when the next drop is due
        async with asyncio.timeout(60):
            while True:
                session = fix.Session.lookupSession(lp_side)
                if session is not None and session.isLoggedOn():
                    return session
                await asyncio.sleep(0.05)

    async def drops() -> None:
        for _ in range(3):
            await asyncio.sleep(0.7)
            # the LP side closes the socket (no logout): both ends keep their sequence
            # numbers, the gateway reconnects and the gap is re-sent
            session = await logged_on()
            await asyncio.to_thread(session.disconnect)

    async def drain() -> None:
        await pipeline.drain(timeout_s=30)
        await via.idle()

    driver = ScenarioDriver(
        intake,
        services.state,
        via.feed,
        seed,
        ScenarioConfig(orders=200, rate_per_s=100, settle_timeout_s=60),
        rng,
        drain,
    )
    dropper = asyncio.create_task(drops())
    try:
        result = await driver.run()
        await dropper
        await intake.shutdown()
        await drain()
    finally:
        await pipeline.stop()
    assert result.settled, result.unsettled[:5]
    report = await reconcile(services.database, services.state)
    assert report.ok, report.differences[:5]
    await asyncio.to_thread(services.logs.flush)
    gateway = records(services.settings.log_dir / "lp_gateway.log")
    assert sum(r.tag == "LPGW:LOGON" for r in gateway) >= 3  # reconnected after each drop
    simulator = records(services.settings.log_dir / "simulator.log")
    assert not [r for r in simulator if r.tag == "SIM:BAD_REQUEST"]


# -- kill -9 of a gateway process, on RabbitMQ ---------------------------------------------


@pytest.fixture
def amqp_settings(tmp_path: Path) -> Settings:
    from tests.services import AMQP_URL, need_service

    need_service("rabbitmq")
    return Settings(
        broker_url=AMQP_URL,
        queue_prefix=f"eflpgw.{uuid.uuid4().hex[:10]}",
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
    )


@pytest.fixture
async def amqp_services(amqp_settings: Settings) -> AsyncIterator[Services]:
    from execflow.backends.rabbitmq import RabbitMQBus
    from tests.backends.conftest import delete_queues

    logs: LogSystem = setup_logging(amqp_settings, "simulator")
    try:
        async with open_services(amqp_settings, logs) as opened:
            try:
                yield opened
            finally:
                assert isinstance(opened.bus, RabbitMQBus)
                declared = set(opened.bus.declared_queues)
                names = opened.queues
                declared |= {names.reports, names.provider_requests}
        await delete_queues(declared)
    finally:
        logs.close()


def gateway_env(settings: Settings, port: int, store: Path) -> dict[str, str]:
    lps = {
        "sim": {
            "port": port,
            "sender_comp_id": "EXECFLOW",
            "target_comp_id": "SIMLP",
            "store_dir": str(store),
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
        }
    }
    out = dict(os.environ)
    out.update(
        EXECFLOW_BROKER_URL=settings.broker_url,
        EXECFLOW_QUEUE_PREFIX=settings.queue_prefix,
        EXECFLOW_LOG_DIR=str(settings.log_dir),
        EXECFLOW_DATABASE_URL=settings.database_url,
        EXECFLOW_LPS=json.dumps(lps),
        EXECFLOW_PREFETCH="16",
    )
    return out


def open_request(number: int) -> ProviderRequest:
    return ProviderRequest(
        lifecycle_id=f"k9-{number}",
        kind=RequestKind.OPEN,
        account_id="live:1",
        order_id=f"k9-{number}",
        symbol="EURUSD",
        side=Side.BUY if number % 2 else Side.SELL,
        order_type=LpOrderType.MARKET,
        qty=Decimal("0.10"),
    )


@pytest.mark.integration
@pytest.mark.slow
async def test_gateway_killed_9_mid_stream_resumes_nothing_lost_nothing_twice(
    amqp_services: Services, tmp_path: Path
) -> None:
    services = amqp_services
    port = free_port()
    lp = FixSimulator(
        services.logger("simulator"),
        LpConfig(latency=LatencyModel(0.5, 2, 5), partial_rate=0.3, ack_rate=0.3),
        FixLpSession(port=port),
        services.clock,
        UuidIds(),
        seed=9,
    )
    await lp.start()
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def collect(delivery: Delivery) -> None:
        doc = orjson.loads(delivery.message.body)
        reports[str(doc.get("11"))].append(doc)
        await delivery.ack()

    consumer = await services.bus.consume(services.queues.reports, collect)
    total = 300
    environ = gateway_env(services.settings, port, tmp_path / "fix")
    gateway = await asyncio.create_subprocess_exec(
        EXECFLOW, "run", "lp-gateway", "--lp", "sim", env=environ
    )
    restarted = None
    try:

        async def publish_all() -> None:
            for number in range(total):  # a steady stream, ~100 requests/s
                body = orjson.dumps(request_to_dict(open_request(number)))
                await services.bus.publish(services.queues.provider_requests, body)
                await asyncio.sleep(0.01)

        publisher = asyncio.create_task(publish_all())
        await wait_for(lambda: len(lp.lp.received) >= total // 3, timeout_s=60)
        gateway.send_signal(signal.SIGKILL)  # mid-stream: requests and reports in flight
        await gateway.wait()
        killed_at = len(lp.lp.received)
        restarted = await asyncio.create_subprocess_exec(
            EXECFLOW, "run", "lp-gateway", "--lp", "sim", env=environ
        )
        await publisher
        await wait_for(lambda: _all_filled(reports, total), timeout_s=90)
    finally:
        for process in (gateway, restarted):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()
        await consumer.stop()
        await lp.stop()

    assert killed_at < total  # the kill really was mid-stream
    # every ClOrdID became one order at the LP; a copy (PossDup re-send) was answered as known
    simulator = records(services.settings.log_dir / "simulator.log")
    new_orders = [r for r in simulator if r.tag == "SIM:FILLED"]
    assert sorted(str(r.fields["lifecycle_id"]) for r in new_orders) == sorted(
        f"k9-{n}" for n in range(total)
    )
    # nothing applied twice: per order, every copy of a fill carries the same exec_id
    for lifecycle_id, docs in reports.items():
        fills = {d["17"] for d in docs if d.get("39") == "2"}
        assert len(fills) == 1, (lifecycle_id, docs)
    # the restarted gateway resumed the stored session (no sequence reset)
    gateway_log = records(services.settings.log_dir / "lp_gateway-sim.log")
    tags = [r.tag for r in gateway_log]
    assert tags.count("PROCESS:START") == 2
    # (the killed process's last buffered lines died with it: only the restart is certain)
    restart = len(tags) - 1 - tags[::-1].index("PROCESS:START")
    assert "LPGW:LOGON" in tags[restart:]
    events = " ".join(str(r.fields.get("text")) for r in gateway_log)
    assert "ResetSeqNumFlag" not in events


def _all_filled(reports: dict[str, list[dict[str, Any]]], total: int) -> bool:
    return all(any(d.get("39") == "2" for d in reports.get(f"k9-{n}", ())) for n in range(total))
