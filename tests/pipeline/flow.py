"""End-to-end harness: seeded services, the embedded pipeline, intake, and a hand-played LP.

The test plays the LP: it reads what intake and the workers sent to ``provider_requests``
and publishes hand-made execution reports (JSON, as an LP adapter would) to ``reports``.
Works on any ``Services`` (in-memory or RabbitMQ + Redis + PostgreSQL).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from execflow.backends.database import StoredEvent
from execflow.domain.codec import account_from_dict, order_from_dict
from execflow.domain.enums import LegKind, RequestKind
from execflow.domain.models import Account, Order
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import IntakeResult, NumericIds, OrderIntake
from execflow.pipeline.seed import apply_seed, read_seed
from execflow.pipeline.services import Services

SEED_FILE = Path(__file__).resolve().parents[2] / "examples" / "seed.toml"
USER = "live:6"
SYMBOL = "EURUSD"
QTY = "1.00"
PARTIAL = "0.40"
ASK = "1.08502"  # LP quote of EURUSD in examples/seed.toml
BID = "1.08500"
SL = "1.08000"
TP = "1.09000"
LIMIT = "1.08000"
NEW_LIMIT = "1.08100"


@dataclass(frozen=True)
class Setup:
    """An order with one request of ``kind`` outstanding at the LP."""

    order_id: str
    lifecycle_id: str
    kind: RequestKind
    request: dict[str, Any]


class Flow:
    """One pipeline run: intake, the LP's side by hand, and what ended up where."""

    def __init__(
        self,
        services: Services,
        pipeline: EmbeddedPipeline,
        *,
        first_order_id: int = 3163458366000,
        first_exec_id: int = 1,
    ) -> None:
        self.services = services
        self.pipeline = pipeline
        self.intake = OrderIntake(services, NumericIds(first_order_id))
        self.sent: list[dict[str, Any]] = []
        self._exec_ids = itertools.count(first_exec_id)

    @classmethod
    @asynccontextmanager
    async def running(
        cls, services: Services, *, first_order_id: int = 3163458366000
    ) -> AsyncIterator[Flow]:
        """Seed ``examples/seed.toml``, start the pipeline, stop it at the end."""
        await apply_seed(await read_seed(SEED_FILE), services.state, services.database)
        pipeline = EmbeddedPipeline(services)
        await pipeline.start()
        try:
            yield cls(services, pipeline, first_order_id=first_order_id)
        finally:
            await pipeline.stop()

    # -- the LP's side ----------------------------------------------------------------------
    async def settle(self) -> None:
        """Let the pipeline finish, then collect what was sent to the LP."""
        await self.pipeline.drain()
        queue = self.services.queues.provider_requests
        while (delivery := await self.services.bus.get(queue)) is not None:
            self.sent.append(orjson.loads(delivery.message.body))
            await delivery.ack()

    def request(self, kind: RequestKind, order_id: str) -> dict[str, Any]:
        """The last request of ``kind`` sent for an order."""
        found = [r for r in self.sent if r["kind"] == kind.value and r["order_id"] == order_id]
        assert found, f"no {kind} request for {order_id}: {self.sent}"
        return found[-1]

    async def report(
        self,
        lifecycle_id: str,
        status: str,
        *,
        qty: str | None = None,
        px: str | None = None,
        level: str | None = None,
        reason: str | None = None,
        exec_id: str | None = None,
        settle: bool = True,
    ) -> str:
        """Publish one execution report (JSON) to ``reports``; return its exec_id."""
        exec_id = exec_id or f"E{next(self._exec_ids):05d}"
        body: dict[str, Any] = {
            "type": "8",
            "clordid": lifecycle_id,
            "exec_id": exec_id,
            "ord_status": status,
            "symbol": SYMBOL,
            "provider": "hand",
        }
        if qty is not None:
            body.update(cum_qty=qty, avg_px=px, last_qty=qty, last_px=px)
        if level is not None:
            body["price"] = level
        if reason is not None:
            body["reason"] = reason
        await self.raw(orjson.dumps(body))
        if settle:
            await self.settle()
        return exec_id

    async def raw(self, body: bytes) -> None:
        """Publish raw LP bytes to ``reports``."""
        await self.services.bus.publish(self.services.queues.reports, body)

    # -- reading the outcome --------------------------------------------------------------------
    async def order(self, order_id: str) -> Order:
        """The order as the state store has it."""
        found = await self.services.state.get_order(USER, order_id)
        assert found is not None, order_id
        return order_from_dict(found.data)

    async def account(self, account_id: str = USER) -> Account:
        """The account as the state store has it."""
        found = await self.services.state.get_account(account_id)
        assert found is not None, account_id
        return account_from_dict(found.data)

    async def events(self, order_id: str) -> list[StoredEvent]:
        """The order's events in the database."""
        return await self.services.database.events_for_order(order_id)

    async def event_kinds(self, order_id: str) -> list[str]:
        """The kinds of the order's events in the database, in insertion order."""
        return [e.kind for e in await self.events(order_id)]

    # -- setups: an order with a request of each kind outstanding -------------------------------
    async def accepted(self, result: IntakeResult) -> IntakeResult:
        """Settle after an intake action that must have been accepted."""
        assert result.accepted, result
        await self.settle()
        return result

    async def open_request(self, sl: str | None = None, tp: str | None = None) -> Setup:
        """OPEN: a market BUY sent."""
        placed = await self.accepted(
            await self.intake.open_market(USER, SYMBOL, "BUY", QTY, sl, tp)
        )
        assert placed.order_id is not None and placed.lifecycle_id is not None
        request = self.request(RequestKind.OPEN, placed.order_id)
        return Setup(placed.order_id, placed.lifecycle_id, RequestKind.OPEN, request)

    async def opened(self, sl: str | None = None, tp: str | None = None) -> Setup:
        """An OPEN position (fill applied)."""
        setup = await self.open_request(sl, tp)
        await self.report(setup.lifecycle_id, "EXECUTED", qty=QTY, px=ASK)
        return setup

    async def place_pending_request(self) -> Setup:
        """PLACE_PENDING: a BUY_LIMIT sent."""
        placed = await self.accepted(
            await self.intake.place_pending(USER, SYMBOL, "BUY_LIMIT", QTY, LIMIT)
        )
        assert placed.order_id is not None and placed.lifecycle_id is not None
        request = self.request(RequestKind.PLACE_PENDING, placed.order_id)
        return Setup(placed.order_id, placed.lifecycle_id, RequestKind.PLACE_PENDING, request)

    async def resting(self) -> Setup:
        """A PENDING order (the LP accepted the limit)."""
        setup = await self.place_pending_request()
        await self.report(setup.lifecycle_id, "PENDING", level=setup.request["price"])
        return setup

    async def modify_request(self) -> Setup:
        """MODIFY_PENDING: a resting limit moved to ``NEW_LIMIT``."""
        resting = await self.resting()
        changed = await self.accepted(await self.intake.modify_pending(resting.order_id, NEW_LIMIT))
        assert changed.lifecycle_id is not None
        request = self.request(RequestKind.MODIFY_PENDING, resting.order_id)
        return Setup(resting.order_id, changed.lifecycle_id, RequestKind.MODIFY_PENDING, request)

    async def cancel_pending_request(self) -> Setup:
        """CANCEL_PENDING: a resting limit being cancelled."""
        resting = await self.resting()
        changed = await self.accepted(await self.intake.cancel_pending(resting.order_id))
        assert changed.lifecycle_id is not None
        request = self.request(RequestKind.CANCEL_PENDING, resting.order_id)
        return Setup(resting.order_id, changed.lifecycle_id, RequestKind.CANCEL_PENDING, request)

    async def close_request(self) -> Setup:
        """CLOSE: an open position being closed."""
        opened = await self.opened()
        changed = await self.accepted(await self.intake.close(opened.order_id))
        assert changed.lifecycle_id is not None
        request = self.request(RequestKind.CLOSE, opened.order_id)
        return Setup(opened.order_id, changed.lifecycle_id, RequestKind.CLOSE, request)

    async def leg_request(self, leg: LegKind) -> Setup:
        """PLACE_SL / PLACE_TP: sent by the open worker after the fill."""
        opened = await self.opened(**({"sl": SL} if leg is LegKind.SL else {"tp": TP}))
        kind = RequestKind.PLACE_SL if leg is LegKind.SL else RequestKind.PLACE_TP
        request = self.request(kind, opened.order_id)
        return Setup(opened.order_id, request["lifecycle_id"], kind, request)

    async def leg_active(self, leg: LegKind) -> Setup:
        """An ACTIVE SL / TP leg (the LP accepted it)."""
        setup = await self.leg_request(leg)
        level = setup.request["stop_px"] or setup.request["price"]
        await self.report(setup.lifecycle_id, "PENDING", level=level)
        return setup

    async def leg_cancel_request(self, leg: LegKind) -> Setup:
        """CANCEL_SL / CANCEL_TP: an active leg being cancelled."""
        active = await self.leg_active(leg)
        cancel = self.intake.cancel_sl if leg is LegKind.SL else self.intake.cancel_tp
        changed = await self.accepted(await cancel(active.order_id))
        assert changed.lifecycle_id is not None
        kind = RequestKind.CANCEL_SL if leg is LegKind.SL else RequestKind.CANCEL_TP
        request = self.request(kind, active.order_id)
        return Setup(active.order_id, changed.lifecycle_id, kind, request)

    async def setup(self, kind: RequestKind) -> Setup:
        """An order with a request of ``kind`` outstanding."""
        builders = {
            RequestKind.OPEN: self.open_request,
            RequestKind.PLACE_PENDING: self.place_pending_request,
            RequestKind.MODIFY_PENDING: self.modify_request,
            RequestKind.CANCEL_PENDING: self.cancel_pending_request,
            RequestKind.CLOSE: self.close_request,
        }
        if kind in builders:
            return await builders[kind]()
        leg = kind.leg
        assert leg is not None
        if kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP):
            return await self.leg_request(leg)
        return await self.leg_cancel_request(leg)


def money(value: str) -> Decimal:
    """A booked amount."""
    return Decimal(value)
