"""The LP simulator on the in-memory bus: reports out, acks after, noise as configured."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import orjson

from execflow.backends.memory_bus import InMemoryBus
from execflow.clock import FakeClock, SequentialIds
from execflow.domain.codec import request_to_dict
from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.reports import parse_message
from execflow.errors import ReportError
from execflow.logs.events import EventLogger
from execflow.sim.feed import PriceFeed
from execflow.sim.lp import LpSimulator
from tests.sim.conftest import quiet_config


def request(lid: str, kind: RequestKind = RequestKind.OPEN, **extra: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "lifecycle_id": lid,
        "kind": kind,
        "account_id": "live:1",
        "order_id": extra.pop("order_id", lid),
        "symbol": "EURUSD",
        "side": Side.BUY,
        "order_type": LpOrderType.MARKET,
        "qty": Decimal("0.30"),
    }
    fields.update(extra)
    return ProviderRequest(**fields)


async def make_lp(
    bus: InMemoryBus, feed: PriceFeed, log: EventLogger, clock: FakeClock, **config: Any
) -> LpSimulator:
    lp = LpSimulator(
        bus, feed, log, quiet_config(**config), random.Random(5), clock, SequentialIds("t")
    )
    await lp.start()
    return lp


async def send(bus: InMemoryBus, *requests: ProviderRequest) -> None:
    for r in requests:
        await bus.publish(
            bus.queues.provider_requests,
            orjson.dumps(request_to_dict(r)),
            {"trace_id": f"tr-{r.lifecycle_id}"},
            r.lifecycle_id,
        )
    await bus.join(bus.queues.provider_requests, timeout_s=5)


async def drain_reports(bus: InMemoryBus) -> list[bytes]:
    out = []
    while (delivery := await bus.get(bus.queues.reports)) is not None:
        out.append(delivery.message.body)
        await delivery.ack()
    return out


def parsed(bodies: list[bytes]) -> tuple[list[ExecutionReport], int]:
    good, bad = [], 0
    for body in bodies:
        try:
            message = parse_message(body)
        except ReportError:
            bad += 1
            continue
        assert isinstance(message, ExecutionReport)
        good.append(message)
    return good, bad


async def test_market_order_is_answered_on_the_reports_queue_and_the_request_acked(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock)
    await send(bus, request("o1"))
    reports, bad = parsed(await drain_reports(bus))
    assert bad == 0
    assert [(r.lifecycle_id, r.ord_status) for r in reports] == [("o1", ReportStatus.EXECUTED)]
    assert await bus.queue_depth(bus.queues.provider_requests) == 0
    assert sim_log.stats.count("success") == 1
    await lp.stop()


async def test_pending_and_legs_fill_when_the_feed_moves(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock)
    await send(
        bus,
        request(
            "p1",
            RequestKind.PLACE_PENDING,
            order_type=LpOrderType.LIMIT,
            price=Decimal("1.09900"),
        ),
    )
    feed.set_mid("EURUSD", Decimal("1.09850"))
    await feed.publish()
    await lp.idle()
    await send(
        bus,
        request(
            "p1-sl-1",
            RequestKind.PLACE_SL,
            order_id="p1",
            side=Side.SELL,
            order_type=LpOrderType.STOP,
            stop_px=Decimal("1.09800"),
        ),
    )
    feed.set_mid("EURUSD", Decimal("1.09700"))
    await feed.publish()
    await lp.idle()
    reports, _ = parsed(await drain_reports(bus))
    assert [(r.lifecycle_id, r.ord_status) for r in reports] == [
        ("p1", ReportStatus.PENDING),
        ("p1", ReportStatus.EXECUTED),
        ("p1-sl-1", ReportStatus.PENDING),
        ("p1-sl-1", ReportStatus.EXECUTED),
    ]
    assert sim_log.stats.count("triggered") == 2
    await lp.stop()


async def test_duplicates_resend_the_same_exec_id(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock, duplicate_rate=1.0)
    await send(bus, request("o1"), request("o2"))
    reports, _ = parsed(await drain_reports(bus))
    ids = [r.exec_id for r in reports]
    assert len(ids) == 4 and len(set(ids)) == 2
    assert sim_log.stats.count("duplicates_sent") == 2
    await lp.stop()


async def test_malformed_messages_come_in_addition_to_the_real_reports(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock, malformed_rate=1.0)
    await send(bus, request("o1"), request("o2"), request("o3"))
    reports, bad = parsed(await drain_reports(bus))
    assert bad == 3
    assert sorted(r.lifecycle_id or "" for r in reports) == ["o1", "o2", "o3"]
    await lp.stop()


async def test_reordering_changes_the_order_of_partial_fills(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock, partial_rate=1.0, reorder_rate=1.0)
    await send(bus, request("o1", qty=Decimal("0.50")))
    reports, _ = parsed(await drain_reports(bus))
    cums = [r.cum_qty for r in reports]
    assert len(cums) >= 2
    assert cums != sorted(cums, key=lambda c: c or 0)
    assert sorted(cums, key=lambda c: c or 0)[-1] == Decimal("0.50")
    assert sim_log.stats.count("reordered") >= 1
    await lp.stop()


async def test_a_re_sent_request_places_no_second_order(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock)
    await send(bus, request("o1"))
    await send(bus, request("o1"))
    reports, _ = parsed(await drain_reports(bus))
    assert len(reports) == 2 and reports[0].exec_id == reports[1].exec_id
    assert lp.book.position("o1") == Decimal("0.30")
    assert sim_log.stats.count("resent_requests") == 1
    await lp.stop()


async def test_a_request_that_does_not_decode_is_dead_lettered(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    lp = await make_lp(bus, feed, sim_log, clock)
    await bus.publish(bus.queues.provider_requests, b'{"lifecycle_id": 1}')
    await bus.join(bus.queues.provider_requests, timeout_s=5)
    dead = await bus.get(bus.dlq_name)
    assert dead is not None and dead.message.headers["x-reason"] == "bad_request"
    await dead.ack()
    await lp.stop()


async def test_each_answered_request_is_one_lp_latency_sample(
    bus: InMemoryBus, feed: PriceFeed, sim_log: EventLogger, clock: FakeClock
) -> None:
    seconds: list[float] = []
    lp = LpSimulator(
        bus,
        feed,
        sim_log,
        quiet_config(),
        random.Random(5),
        clock,
        SequentialIds("t"),
        on_answered=seconds.append,
    )
    await lp.start()
    await send(bus, request("o1"), request("o2"))
    await send(bus, request("o1"))  # a re-sent request: answered again, not measured again
    await lp.stop()
    assert len(seconds) == 2 and all(0 <= s < 5 for s in seconds)
