"""A hostile LP, written here with a plain FIX codec (simplefix), against the real gateway.

It logs on properly, then answers an order with garbage between messages, a bad checksum,
a wrong BodyLength, a fill for another symbol, a fill on the wrong side and a huge Text
field, before the one correct fill. The session survives (no logout), the broken frames
are dropped and re-requested (visible as session events), the contradicting fills are
refused by the report guard (visible in the DLQ), and only the correct fill is applied.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import simplefix

from execflow.backends.bus import H_REASON
from execflow.backends.memory_bus import InMemoryBus
from execflow.domain.codec import order_from_dict
from execflow.domain.enums import OrderStatus
from execflow.gateway.service import LpGateway
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services
from execflow.settings import LpSession
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed
from execflow.sim.refdata import demo_seed
from execflow.sim.viafix import free_port
from tests.gateway.conftest import wait_for
from tests.gateway.test_processes import records


def stamp() -> bytes:
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()


class HostileLp:
    """Just enough of a FIX acceptor to log on, heartbeat and re-send; the rest is abuse."""

    def __init__(self) -> None:
        self.seq = 0
        self.sent: dict[int, tuple[bytes, list[tuple[int, bytes | str]]]] = {}
        self.dropped: set[int] = set()  # our sequence numbers sent broken on purpose
        self.orders: asyncio.Queue[simplefix.FixMessage] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None
        self.logouts = 0

    def build(
        self, msg_type: bytes, body: list[tuple[int, bytes | str]], seq: int, again: bool = False
    ) -> bytes:
        message = simplefix.FixMessage()
        message.append_pair(8, b"FIX.4.4", header=True)
        message.append_pair(35, msg_type, header=True)
        message.append_pair(49, b"SIMLP", header=True)
        message.append_pair(56, b"EXECFLOW", header=True)
        message.append_pair(34, str(seq).encode(), header=True)
        if again:  # a re-sent sequence number: PossDup and the original sending time
            message.append_pair(43, b"Y", header=True)
            message.append_pair(122, stamp(), header=True)
        message.append_pair(52, stamp(), header=True)
        for tag, value in body:
            message.append_pair(tag, value)
        encoded: bytes = message.encode()
        return encoded

    def next(self, msg_type: bytes, body: list[tuple[int, bytes | str]]) -> bytes:
        self.seq += 1
        self.sent[self.seq] = (msg_type, body)
        return self.build(msg_type, body, self.seq)

    def broken(self, msg_type: bytes, body: list[tuple[int, bytes | str]]) -> bytes:
        """The next message, to be sent damaged: never re-sent, gap-filled instead."""
        raw = self.next(msg_type, body)
        self.dropped.add(self.seq)
        return raw

    async def send(self, raw: bytes) -> None:
        assert self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        parser = simplefix.FixParser()
        try:
            while data := await reader.read(65536):
                parser.append_buffer(data)
                while (message := parser.get_message()) is not None:
                    await self.answer(message)
        finally:
            writer.close()  # the gateway hung up: our end of the socket goes too

    async def answer(self, message: simplefix.FixMessage) -> None:
        kind = message.get(35)
        if kind == b"A":
            await self.send(self.next(b"A", [(98, b"0"), (108, message.get(108))]))
        elif kind == b"1":
            await self.send(self.next(b"0", [(112, message.get(112))]))
        elif kind == b"2":
            await self.resend(int(message.get(7)), int(message.get(16)))
        elif kind == b"5":
            self.logouts += 1
            await self.send(self.next(b"5", []))
        elif kind == b"D":
            await self.orders.put(message)

    async def resend(self, begin: int, end: int) -> None:
        for seq in range(begin, (end or self.seq) + 1):
            msg_type, body = self.sent[seq]
            if seq in self.dropped or msg_type in (b"A", b"0"):
                gap: list[tuple[int, bytes | str]] = [(123, b"Y"), (36, str(seq + 1).encode())]
                await self.send(self.build(b"4", gap, seq, again=True))
            else:
                await self.send(self.build(msg_type, body, seq, again=True))


def fill(order: simplefix.FixMessage, exec_id: str, **changes: bytes | str) -> list:  # type: ignore[type-arg]
    qty = order.get(38)
    fields = {
        37: b"H-1",
        11: order.get(11),
        17: exec_id.encode(),
        150: b"F",
        39: b"2",
        55: order.get(55),
        54: order.get(54),
        32: qty,
        31: b"1.08510",
        151: b"0",
        14: qty,
        6: b"1.08510",
    }
    for key, value in changes.items():
        fields[int(key.removeprefix("t"))] = value
    return list(fields.items())


@pytest.mark.slow
async def test_a_hostile_lp_changes_nothing_it_should_not(
    services: Services, tmp_path: Path
) -> None:
    hostile = HostileLp()
    port = free_port()
    server = await asyncio.start_server(hostile.serve, "127.0.0.1", port)
    feed = PriceFeed(DEFAULT_SYMBOLS, services.state.put_price, random.Random(1), services.clock)
    await feed.publish()
    seed = demo_seed(3, random.Random(2), feed)
    await apply_seed(seed, services.state, services.database)
    session = LpSession(
        port=port, sender_comp_id="EXECFLOW", target_comp_id="SIMLP", store_dir=tmp_path / "fix"
    )
    gateway = LpGateway(services, "hostile", session)
    pipeline = EmbeddedPipeline(services, lp=gateway, rebuild=False)
    await pipeline.start()
    intake = OrderIntake(services)
    try:
        await wait_for(gateway.logged_on.is_set)
        placed = await intake.open_market("live:1", "EURUSD", "BUY", "0.10")
        assert placed.accepted and placed.order_id is not None, placed
        order = await asyncio.wait_for(hostile.orders.get(), 10)

        await hostile.send(b"garbage between messages\x01\x01=\x01")
        bad_sum = hostile.broken(b"8", fill(order, "X-1"))
        await hostile.send(bad_sum[:-4] + b"%03d\x01" % ((int(bad_sum[-4:-1]) + 7) % 256))
        long = hostile.broken(b"8", fill(order, "X-2"))
        await hostile.send(long.replace(b"\x019=", b"\x019=1", 1))  # BodyLength 10x too big
        await hostile.send(b"x" * 2000 + b"\x01")  # ...and its claimed body: all garbage
        await hostile.send(hostile.next(b"8", fill(order, "X-3", t55=b"GBPUSD")))
        await hostile.send(hostile.next(b"8", fill(order, "X-4", t54=b"2")))
        huge = fill(order, "X-5", t39=b"0", t150=b"0", t14=b"0", t32=b"0", t151=order.get(38))
        huge.append((58, b"A" * 200_000))
        await hostile.send(hostile.next(b"8", huge))
        await hostile.send(hostile.next(b"8", fill(order, "X-6")))

        async def opened() -> bool:
            found = await services.state.get_order("live:1", placed.order_id or "")
            assert found is not None
            return order_from_dict(found.data).status is OrderStatus.OPEN

        await wait_for(opened, timeout_s=20)
        await pipeline.drain(timeout_s=20)
        logouts_while_trading = hostile.logouts
    finally:
        await intake.shutdown()
        await pipeline.stop()
        server.close()
    found = await services.state.get_order("live:1", placed.order_id or "")
    assert found is not None
    booked = order_from_dict(found.data)
    assert (booked.status, booked.avg_px, booked.cum_qty) == (
        OrderStatus.OPEN,
        Decimal("1.08510"),
        Decimal("0.10"),
    )
    report = await reconcile(services.database, services.state)
    assert report.ok, report.differences
    bus = services.bus
    assert isinstance(bus, InMemoryBus)
    reasons = []
    while (dead := await bus.get(bus.dlq_name)) is not None:
        reasons.append(dead.message.headers.get(H_REASON))
        await dead.ack()
    assert sorted(r for r in reasons if r) == ["report_mismatch", "report_mismatch"], reasons
    await asyncio.to_thread(services.logs.flush)
    lines = records(services.settings.log_dir / "lp_gateway.log")
    events = [str(r.fields.get("text")) for r in lines if r.tag == "LPGW:SESSION_EVENT"]
    assert sum("Invalid message" in e or "checksum" in e.lower() for e in events) >= 1, events
    assert [r.tag for r in lines].count("LPGW:LOGON") == 1  # the session survived
    assert logouts_while_trading == 0
    received = [r for r in lines if r.tag == "LPGW:REPORT_RECEIVED"]
    assert {str(r.fields["exec_id"]) for r in received} == {"X-3", "X-4", "X-5", "X-6"}
