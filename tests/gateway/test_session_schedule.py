"""The session schedule (``session_start`` / ``session_end``) against the simulator's acceptor.

The gateway logs on only inside its window and logs out at its end (QuickFIX keeps the
schedule); a request that comes while the session is outside its window is not sent and
not lost: it waits, unacknowledged, and goes out at the next logon.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from execflow.backends.bus import Delivery
from execflow.clock import UuidIds
from execflow.domain.codec import request_to_dict
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.messages import ProviderRequest
from execflow.gateway.service import LpGateway
from execflow.logtools.record import LogRecord
from execflow.pipeline.services import Services
from execflow.settings import LpSession
from execflow.sim.config import LatencyModel, LpConfig
from execflow.sim.fixlp import FixLpSession, FixSimulator
from execflow.sim.viafix import free_port
from tests.gateway.conftest import wait_for
from tests.gateway.test_processes import records

pytest.importorskip("quickfix")

CALM = LpConfig(latency=LatencyModel(0, 0, 0), ack_rate=0.0, slippage_rate=0.0)


def time_of_day(moment: datetime) -> str:
    """QuickFIX's StartTime / EndTime: HH:MM:SS, UTC (a window may cross midnight)."""
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def request(number: int) -> ProviderRequest:
    return ProviderRequest(
        lifecycle_id=f"sched-{number}",
        kind=RequestKind.OPEN,
        account_id="live:1",
        order_id=f"sched-{number}",
        symbol="EURUSD",
        side=Side.BUY,
        order_type=LpOrderType.MARKET,
        qty=Decimal("0.10"),
    )


def simulator(services: Services, port: int) -> FixSimulator:
    return FixSimulator(
        services.logger("simulator"), CALM, FixLpSession(port=port), services.clock, UuidIds()
    )


def session(port: int, store: Path, start: datetime, end: datetime) -> LpSession:
    return LpSession(
        port=port,
        sender_comp_id="EXECFLOW",
        target_comp_id="SIMLP",
        store_dir=store,
        session_start=time_of_day(start),
        session_end=time_of_day(end),
    )


def tagged(log: list[LogRecord], tag: str) -> list[datetime]:
    return [datetime.fromisoformat(r.ts.replace("Z", "+00:00")) for r in log if r.tag == tag]


@pytest.mark.slow
async def test_logon_inside_the_window_logout_at_its_end_requests_outside_wait(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    lp = simulator(services, port)
    await lp.start()
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def collect(delivery: Delivery) -> None:
        doc = orjson.loads(delivery.message.body)
        reports[str(doc.get("11"))].append(doc)
        await delivery.ack()

    async def send(number: int) -> None:
        body = orjson.dumps(request_to_dict(request(number)))
        await services.bus.publish(services.queues.provider_requests, body)

    consumer = await services.bus.consume(services.queues.reports, collect)
    # whole seconds: QuickFIX compares the schedule at one-second resolution
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now + timedelta(seconds=5), now + timedelta(seconds=10)
    store = tmp_path / "fix"
    gateway = LpGateway(services, "sim", session(port, store, start, end))
    running: list[LpGateway | FixSimulator] = [lp, gateway]  # stopped at the end, if still up
    try:
        await gateway.start()
        await send(1)  # before the window opens
        await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds() - 0.5))
        if datetime.now(UTC) < start - timedelta(seconds=0.2):  # (the log proves it anyway)
            # outside the window: no connection at all, the request waits
            assert not gateway.logged_on.is_set()
            assert not lp.lp.logged_on.is_set()
            assert lp.lp.received == []

        await wait_for(gateway.logged_on.is_set, timeout_s=10)
        await wait_for(lambda: any(d.get("39") == "2" for d in reports["sched-1"]), 10)
        assert lp.lp.received == ["sched-1"]  # sent at the logon, once

        await wait_for(lambda: not gateway.logged_on.is_set(), timeout_s=10)
        await send(2)  # after the window closed
        await asyncio.sleep(3)
        assert lp.lp.received == ["sched-1"]  # not sent outside the window
        assert not gateway.logged_on.is_set()
        assert "sched-2" not in reports

        # the next session (a new window; a new session day at the LP too): it goes out
        await gateway.stop()  # the waiting request goes back to the queue, unacknowledged
        await lp.stop()
        running.clear()
        fresh = simulator(services, port)
        running.append(fresh)
        await fresh.start()
        now = datetime.now(UTC)
        second = LpGateway(
            services,
            "sim",
            session(port, store, now - timedelta(seconds=60), now + timedelta(seconds=120)),
        )
        running.append(second)
        await second.start()
        await wait_for(lambda: any(d.get("39") == "2" for d in reports["sched-2"]), 15)
        assert fresh.lp.received == ["sched-2"]
    finally:
        await consumer.stop()
        for part in reversed(running):
            await part.stop()

    await asyncio.to_thread(services.logs.flush)
    log = records(services.settings.log_dir / "lp_gateway.log")
    logons, logouts = tagged(log, "LPGW:LOGON"), tagged(log, "LPGW:LOGOUT")
    assert len(logons) == 2 and len(logouts) == 2
    assert start <= logons[0] < end + timedelta(seconds=1)  # inside the window
    assert end <= logouts[0] < end + timedelta(seconds=5)  # at its end, by the engine
    sent = [r for r in log if r.tag == "LPGW:SUCCESS"]
    assert [r.fields["lifecycle_id"] for r in sent] == ["sched-1", "sched-2"]
    assert start <= tagged(log, "LPGW:SUCCESS")[0] <= end + timedelta(seconds=1)
