"""Two LPs at once, routed by group and symbol; market data as quotes, stale ones refused."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from execflow.clock import UuidIds
from execflow.domain.codec import order_from_dict
from execflow.domain.enums import OrderStatus
from execflow.gateway.service import LpGateway
from execflow.logtools.record import parse_line
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services
from execflow.settings import LpRouting, LpSession, Settings
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS
from execflow.sim.fixlp import FixLpSession, FixSimulator
from execflow.sim.refdata import demo_seed
from execflow.sim.viafix import ViaFix, free_port
from tests.gateway.conftest import wait_for

pytest.importorskip("quickfix")

CALM = LpConfig(latency=LatencyModel(0, 0, 0), ack_rate=0.0, slippage_rate=0.0)
SYMBOLS = tuple(s.symbol for s in DEFAULT_SYMBOLS)


async def status_of(services: Services, account_id: str, order_id: str) -> OrderStatus | None:
    found = await services.state.get_order(account_id, order_id)
    return None if found is None else order_from_dict(found.data).status


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        log_dir=tmp_path / "logs",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        lp_routing=LpRouting(default="lpa", routes={"vip:*": "lpb", "pro:XAUUSD": "lpb"}),
        quote_max_age_s=2.0,
    )


@pytest.mark.slow
async def test_two_lps_each_get_the_orders_routed_to_them(
    services: Services, tmp_path: Path
) -> None:
    lps: dict[str, FixSimulator] = {}
    gateways: dict[str, LpGateway] = {}
    for name in ("lpa", "lpb"):
        port = free_port()
        # the same seed: both LPs quote the same path, as two venues on one market would
        lps[name] = FixSimulator(
            services.logger("simulator"),
            CALM,
            # CompIDs name a session inside the one engine of this process: one pair per LP
            FixLpSession(port=port, sender_comp_id=f"SIM_{name}", target_comp_id=f"EF_{name}"),
            services.clock,
            UuidIds(),
            seed=5,
        )
        session = LpSession(
            port=port,
            sender_comp_id=f"EF_{name}",
            target_comp_id=f"SIM_{name}",
            store_dir=tmp_path / "fix",
            symbols=SYMBOLS,
        )
        gateways[name] = LpGateway(services, name, session)
    pipeline = EmbeddedPipeline(services, rebuild=False)
    seed = demo_seed(
        3, random.Random(1), lps["lpa"].feed
    )  # live:1 pro, live:2 vip, demo:3 standard
    await apply_seed(seed, services.state, services.database)
    await pipeline.start()
    for name in lps:
        await lps[name].start()
        await gateways[name].start()
    try:
        for gateway in gateways.values():
            await wait_for(gateway.logged_on.is_set)
        intake = OrderIntake(services)
        placed = {
            ("live:2", "EURUSD"): "lpb",  # vip: every symbol to lpb
            ("live:1", "XAUUSD"): "lpb",  # pro, XAUUSD only
            ("live:1", "EURUSD"): "lpa",  # pro, anything else: the default
            ("demo:3", "GBPUSD"): "lpa",  # standard: the default
        }
        orders = {}
        for (account_id, symbol), lp in placed.items():
            result = await intake.open_market(account_id, symbol, "BUY", "0.01")
            assert result.accepted, result
            assert result.order_id is not None
            orders[result.order_id] = (account_id, lp)
        for order_id, (account_id, _lp) in orders.items():
            await wait_for(partial(_is, services, account_id, order_id, OrderStatus.OPEN))
            closed = await intake.close(order_id)
            assert closed.accepted, closed
        for order_id, (account_id, _lp) in orders.items():
            await wait_for(partial(_is, services, account_id, order_id, OrderStatus.CLOSED))
        await intake.shutdown()
        for order_id, (_account, lp) in orders.items():
            # open and close of one order both went to its LP, and only to it
            own = [c for c in lps[lp].lp.received if c.startswith(order_id)]
            other = "lpb" if lp == "lpa" else "lpa"
            assert len(own) == 2, (order_id, lp, own)
            assert not [c for c in lps[other].lp.received if c.startswith(order_id)]
        await asyncio.to_thread(services.logs.flush)
        reports = [
            r
            for line in (services.settings.log_dir / "lp_gateway.log").read_text().splitlines()
            if (r := parse_line(line)) is not None and r.tag == "LPGW:REPORT_RECEIVED"
        ]
        by_lp = {str(r.fields.get("lp")) for r in reports}
        assert by_lp == {"lpa", "lpb"}
    finally:
        for name in lps:
            await gateways[name].stop()
            await lps[name].stop()
        await pipeline.stop()


async def _is(services: Services, account_id: str, order_id: str, status: OrderStatus) -> bool:
    return await status_of(services, account_id, order_id) is status


@pytest.mark.slow
async def test_quotes_arrive_as_market_data_and_a_stale_one_refuses_orders(
    services: Services, tmp_path: Path
) -> None:
    # one tick an hour: after the logon snapshot the LP goes quiet until the test steps it
    via = ViaFix(services, CALM, tmp_path / "fix", tick_interval_s=3600.0)
    seed = demo_seed(3, random.Random(1), via.feed)
    await apply_seed(seed, services.state, services.database)
    pipeline = EmbeddedPipeline(services, lp=via, rebuild=False)
    await pipeline.start()
    intake = OrderIntake(services)
    try:
        stored = await services.state.get_price("EURUSD")
        assert stored is not None and "time" in stored
        assert stored["provider"] == "sim"
        quote = via.feed.quote("EURUSD")
        assert quote is not None and stored["bid"] == str(quote.bid)
        fresh = await intake.open_market("live:1", "EURUSD", "BUY", "0.01")
        assert fresh.accepted, fresh
        await wait_for(lambda: not via.gateway.quotes._dirty, 5.0)
        await wait_for(
            lambda: _refused_stale(intake), timeout_s=10.0
        )  # quotes age past quote_max_age_s (2 s)
        await via.feed.step()  # the LP quotes again: X incremental -> fresh quotes
        await via.gateway.quotes.flush()
        await wait_for(lambda: _accepted(intake), timeout_s=5.0)
    finally:
        await intake.shutdown()
        await pipeline.stop()


async def _refused_stale(intake: OrderIntake) -> bool:
    result = await intake.open_market("live:1", "EURUSD", "BUY", "0.01")
    if result.accepted:
        return False
    assert result.reason == "stale_price", result
    return True


async def _accepted(intake: OrderIntake) -> bool:
    result = await intake.open_market("live:1", "GBPUSD", "SELL", "0.01")
    return result.accepted


@pytest.mark.slow
async def test_a_pending_order_is_modified_and_cancelled_over_fix(
    services: Services, tmp_path: Path
) -> None:
    # routed: every request of this module's settings goes to lpa by default
    via = ViaFix(services, CALM, tmp_path / "fix", lp_name="lpa", tick_interval_s=3600.0)
    seed = demo_seed(3, random.Random(1), via.feed)
    await apply_seed(seed, services.state, services.database)
    pipeline = EmbeddedPipeline(services, lp=via, rebuild=False)
    await pipeline.start()
    intake = OrderIntake(services)
    try:
        quote = via.feed.quote("EURUSD")
        assert quote is not None
        far = quote.bid - Decimal("0.01")  # a buy limit far below: it rests
        placed = await intake.place_pending("live:1", "EURUSD", "BUY_LIMIT", "0.10", far)
        assert placed.accepted and placed.order_id is not None, placed
        order_id = placed.order_id
        await wait_for(lambda: _is(services, "live:1", order_id, OrderStatus.PENDING))
        moved = await intake.modify_pending(order_id, far - Decimal("0.001"))
        assert moved.accepted, moved

        async def repriced() -> bool:
            found = await services.state.get_order("live:1", order_id)
            assert found is not None
            order = order_from_dict(found.data)
            return order.status is OrderStatus.PENDING and order.requested_price == far - Decimal(
                "0.001"
            )

        await wait_for(repriced)  # G answered by an 8 with ExecType 5 (FIX 4.4: OrdStatus 0)
        cancelled = await intake.cancel_pending(order_id)
        assert cancelled.accepted, cancelled
        await wait_for(lambda: _is(services, "live:1", order_id, OrderStatus.CANCELLED))
    finally:
        await intake.shutdown()
        await pipeline.stop()
    await asyncio.to_thread(services.logs.flush)
    lines = (services.settings.log_dir / "lp_gateway.log").read_text()
    assert "LPGW:LP_MESSAGE_REFUSED" not in lines
    assert "msg_type=G" in lines and "msg_type=F" in lines
