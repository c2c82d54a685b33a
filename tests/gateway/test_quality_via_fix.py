"""2,000 orders of every kind through the pipeline and a real FIX session, then the quality check.

The embedded pipeline trades against the simulator's FIX acceptor (QuickFIX on both
ends, market data included) with a messy LP: rejects, partial fills, slippage, duplicate,
reordered and malformed reports. Afterwards the books reconcile clean, and the per-LP
quality figures computed from the database (``lp_executions``, what ``execflow lp
quality`` reads) equal the figures computed here, by hand, from what the simulator's
own book answered: every request it received, the quote it priced it at, every report it
produced. Nothing of the gateway's or the domain's quality code computes the expected side.

Prices move only between waves, one step at a time with the pipeline quiet in between,
so that the quote the gateway holds when it sends a market order is exactly the one the
simulator fills it at (a market order's slippage reference is the gateway's quote); in a
free-running feed the two differ by whatever moved while the order was on the wire.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.enums import (
    LpOrderType,
    OrderStatus,
    OrderType,
    ReportStatus,
    RequestKind,
    Side,
)
from execflow.domain.lpquality import figures, summarise
from execflow.domain.messages import ProviderRequest
from execflow.domain.models import Quote
from execflow.pipeline.embedded import EmbeddedPipeline
from execflow.pipeline.intake import IntakeResult, OrderIntake
from execflow.pipeline.reconcile import reconcile
from execflow.pipeline.seed import Seed, apply_seed
from execflow.pipeline.services import Services
from execflow.sim.book import Answer
from execflow.sim.config import LpConfig
from execflow.sim.refdata import demo_seed
from execflow.sim.viafix import ViaFix
from tests.gateway.conftest import wait_for

pytest.importorskip("quickfix")

ORDERS = 2000
WAVES = 20
STEPS_PER_WAVE = 10
MESSY_LP = LpConfig(
    reject_rate=0.05,
    partial_rate=0.25,
    duplicate_rate=0.05,
    reorder_rate=0.05,
    malformed_rate=0.02,
    ack_rate=0.3,
    slippage_rate=0.3,
    slippage_max_ticks=3,
)
_PENDING_TYPES = (
    OrderType.BUY_LIMIT,
    OrderType.SELL_LIMIT,
    OrderType.BUY_STOP,
    OrderType.SELL_STOP,
)
_FINALS = {"EXECUTED", "CANCELLED", "REJECTED"}
_RANK = {"PENDING": 1, "MODIFY": 1, "PARTIALLY_FILLED": 2}


# -- what the simulator's book did ------------------------------------------------------------


@dataclass
class BookRecord:
    """One request as the simulated LP saw and answered it."""

    request: ProviderRequest
    quote: Quote | None  # the LP's own quote of the symbol when the request arrived
    conversion: dict[str, Quote]  # the LP's quotes of the conversion pairs then
    received_at: datetime
    phase: str
    reports: list[Any] = field(default_factory=list)  # ExecutionReports, book order


class BookTap:
    """Records what the book answered (a spy around ``LpBook.handle`` / ``on_quotes``)."""

    def __init__(self, via: ViaFix, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: dict[str, BookRecord] = {}
        self.orphans: list[Any] = []
        self.phase = "start"
        book = via.server.book
        handle, on_quotes = book.handle, book.on_quotes
        feed = via.feed

        def tapped_handle(request: ProviderRequest, quote: Quote | None) -> Answer:
            answer = handle(request, quote)
            if answer.resent:
                return answer
            assert request.lifecycle_id not in self.records, "a ClOrdID answered twice"
            conversion = {p: q for p in ("USDJPY", "GBPUSD") if (q := feed.quote(p)) is not None}
            self.records[request.lifecycle_id] = BookRecord(
                request, quote, conversion, services.clock.now(), self.phase
            )
            self._keep(answer)
            return answer

        def tapped_on_quotes(quotes: Any) -> Any:
            fills = on_quotes(quotes)
            self._keep(Answer(tuple(fills), "TRIGGERED"))
            return fills

        monkeypatch.setattr(book, "handle", tapped_handle)
        monkeypatch.setattr(book, "on_quotes", tapped_on_quotes)

    def _keep(self, answer: Answer) -> None:
        for out in answer.reports:
            record = self.records.get(out.report.lifecycle_id or "")
            if record is None:
                self.orphans.append(out.report)
            else:
                record.reports.append(out.report)


# -- the expected figures, by hand --------------------------------------------------------------


@dataclass
class Expected:
    status: str
    cum_qty: Decimal
    avg_px: Decimal | None
    reject_reason: str | None
    slippage_pips: Decimal | None
    slippage_usd: Decimal | None


def expected_of(record: BookRecord, seed: Seed) -> Expected:
    request = record.request
    status = "SENT"
    cum, avg, reason = Decimal(0), None, None
    for report in record.reports:
        value = report.ord_status.value
        if status not in _FINALS and (value in _FINALS or _RANK[value] >= _RANK.get(status, 0)):
            status = value
            if value == "REJECTED":
                reason = " ".join((report.reason or "").split())
        if report.ord_status.is_fill and report.cum_qty is not None and report.cum_qty > cum:
            cum, avg = report.cum_qty, report.avg_px
    finals = {r.ord_status.value for r in record.reports} & _FINALS
    assert len(finals) <= 1, (request, record.reports)
    reference: Decimal | None = None
    if request.kind in (RequestKind.OPEN, RequestKind.CLOSE):
        assert record.quote is not None
        reference = record.quote.ask if request.side is Side.BUY else record.quote.bid
    elif request.kind in (
        RequestKind.PLACE_PENDING,
        RequestKind.MODIFY_PENDING,
        RequestKind.PLACE_SL,
        RequestKind.PLACE_TP,
    ):
        reference = request.stop_px if request.order_type is LpOrderType.STOP else request.price
    pips = usd = None
    if reference is not None and avg is not None and cum > 0:
        # positive is in the client's favour: bought below, sold above the reference
        diff = (reference - avg) if request.side is Side.BUY else (avg - reference)
        instrument = seed.instrument(seed.accounts[0].group, request.symbol)
        assert instrument is not None
        pips = diff / instrument.spread_pip
        amount = diff * cum * instrument.contract_size
        usd = _usd(amount, instrument.profit_currency, record.conversion)
    return Expected(status, cum, avg, reason, pips, usd)


def _usd(amount: Decimal, currency: str, quotes: dict[str, Quote]) -> Decimal:
    """USD at the side of the quote less in the client's favour (the books' rule)."""
    if currency == "USD":
        return amount
    direct = quotes.get(currency + "USD")
    if direct is not None:
        candidates = [amount * direct.bid, amount * direct.ask]
    else:
        inverse = quotes["USD" + currency]
        candidates = [amount / inverse.bid, amount / inverse.ask]
    pick = min if amount >= 0 else max  # earned: the smaller; owed: the larger
    return pick(candidates, key=abs)


# -- the trading ------------------------------------------------------------------------------


class WaveDriver:
    """New orders and follow-ups with prices frozen, then price steps with the pipeline quiet."""

    def __init__(
        self,
        via: ViaFix,
        pipeline: EmbeddedPipeline,
        intake: OrderIntake,
        services: Services,
        seed: Seed,
        rng: random.Random,
        tap: BookTap,
    ) -> None:
        self.tap = tap
        self.via, self.pipeline, self.intake = via, pipeline, intake
        self.services, self.seed, self.rng = services, seed, rng
        self.owner: dict[str, str] = {}
        self.live: list[str] = []
        self.placed = 0
        self.actions: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    async def quiet(self) -> None:
        """Until nothing moves: requests sent and answered, reports applied, chains done."""
        via, pipeline = self.via, self.pipeline
        while True:
            before = (len(via.server.received), via.server.reports_sent, via.gateway.reports_seen)
            await pipeline.drain(timeout_s=60)
            await via.idle()
            await pipeline.drain(timeout_s=60)
            if before == (
                len(via.server.received),
                via.server.reports_sent,
                via.gateway.reports_seen,
            ):
                return

    async def synced_quotes(self) -> None:
        """The gateway (and the state store) hold the LP's current quote of every symbol."""
        feed, quotes = self.via.feed, self.via.gateway.quotes

        def same() -> bool:
            for symbol in feed.symbols:
                quote = feed.quote(symbol)
                assert quote is not None
                if quotes.latest(symbol) != (quote.bid, quote.ask):
                    return False
            return True

        await wait_for(same)
        await quotes.flush()

    async def run(self) -> None:
        per_wave = ORDERS // WAVES
        for wave in range(WAVES):
            await self.synced_quotes()
            self.tap.phase = f"wave {wave}"
            target = self.placed + per_wave
            for _ in range(10):  # the intake refuses some (margin, a price on the wrong side)
                await self._gather([self.new_order for _ in range(target - self.placed)])
                if self.placed >= target:
                    break
            follow_ups = [self.follow_up for _ in range(int(per_wave * 0.6)) if self.live]
            await self._gather(follow_ups)
            await self.quiet()
            for step in range(STEPS_PER_WAVE):
                self.tap.phase = f"wave {wave} step {step}"
                await self.via.feed.step()
                await self.quiet()
        await self.settle()

    async def _gather(self, steps: list[Callable[[], Any]]) -> None:
        slots = asyncio.Semaphore(8)

        async def one(step: Callable[[], Any]) -> None:
            async with slots:
                await step()

        await asyncio.gather(*(one(step) for step in steps))

    def record(self, result: IntakeResult) -> None:
        if result.accepted:
            self.actions[result.action] += 1
        else:
            self.refused[result.reason or "?"] += 1

    def _distance(self, symbol: str, low: int, high: int) -> Decimal:
        spec = self.via.feed.spec(symbol)
        assert spec is not None
        return spec.tick * round(spec.sigma_ticks * self.rng.randint(low, high))

    async def new_order(self) -> None:
        account = self.rng.choice(self.seed.accounts)
        symbol = self.rng.choice(self.via.feed.symbols)
        instrument = self.seed.instrument(account.group, symbol)
        quote = self.via.feed.quote(symbol)
        if instrument is None or quote is None:
            return
        qty = max(instrument.lot_step * self.rng.randint(1, 10), instrument.min_lots)
        hs = instrument.half_spread
        bid, ask = quote.bid - hs, quote.ask + hs
        protect = self.rng.random() < 0.35
        if self.rng.random() < 0.5:
            side = self.rng.choice((Side.BUY, Side.SELL))
            sl, tp = self._protection(side, bid if side is Side.BUY else ask, symbol)
            result = await self.intake.open_market(
                account.account_id, symbol, side, qty, *((sl, tp) if protect else (None, None))
            )
        else:
            kind = self.rng.choice(_PENDING_TYPES)
            price = self._pending_price(kind, bid, ask, symbol)
            sl, tp = self._protection(kind.side or Side.BUY, price, symbol)
            result = await self.intake.place_pending(
                account.account_id,
                symbol,
                kind,
                qty,
                price,
                *((sl, tp) if protect else (None, None)),
            )
        self.record(result)
        if result.accepted and result.order_id is not None:
            self.placed += 1
            self.owner[result.order_id] = account.account_id
            self.live.append(result.order_id)

    def _pending_price(self, kind: OrderType, bid: Decimal, ask: Decimal, symbol: str) -> Decimal:
        distance = self._distance(symbol, 1, 5)
        return {
            OrderType.BUY_LIMIT: ask - distance,
            OrderType.SELL_LIMIT: bid + distance,
            OrderType.BUY_STOP: ask + distance,
            OrderType.SELL_STOP: bid - distance,
        }[kind]

    def _protection(self, side: Side, reference: Decimal, symbol: str) -> tuple[Decimal, Decimal]:
        sl_gap, tp_gap = self._distance(symbol, 2, 8), self._distance(symbol, 2, 8)
        if side is Side.BUY:
            return reference - sl_gap, reference + tp_gap
        return reference + sl_gap, reference - tp_gap

    async def _status(self, order_id: str) -> tuple[OrderStatus, dict[str, Any]] | None:
        found = await self.services.state.get_order(self.owner[order_id], order_id)
        if found is None:
            return None
        return OrderStatus(found.data["status"]), found.data

    # C901: one random next step per order state, as the scenario driver's: the choices branch
    async def follow_up(self) -> None:  # noqa: C901
        if not self.live:
            return
        order_id = self.rng.choice(self.live)
        known = await self._status(order_id)
        if known is None:
            return
        status, data = known
        if status.is_final:
            if order_id in self.live:
                self.live.remove(order_id)
            return
        roll = self.rng.random()
        symbol = str(data["symbol"])
        quote = self.via.feed.quote(symbol)
        instrument = self.seed.instrument(self.seed.accounts[0].group, symbol)
        assert quote is not None and instrument is not None
        if status is OrderStatus.PENDING:
            if roll < 0.6:
                group = next(
                    a.group for a in self.seed.accounts if a.account_id == self.owner[order_id]
                )
                priced = self.seed.instrument(group, symbol)
                assert priced is not None
                hs = priced.half_spread
                kind = OrderType(data["order_type"])
                price = self._pending_price(kind, quote.bid - hs, quote.ask + hs, symbol)
                self.record(await self.intake.modify_pending(order_id, price))
            else:
                self.record(await self.intake.cancel_pending(order_id))
            return
        if status is not OrderStatus.OPEN:
            return
        side = Side(str(data["side"]))
        sl_state, tp_state = data["sl"]["state"], data["tp"]["state"]
        reference = quote.bid if side is Side.BUY else quote.ask
        sl, tp = self._protection(side, reference, symbol)
        if roll < 0.2 and sl_state in ("NONE", "CANCELLED", "REJECTED"):
            self.record(await self.intake.set_sl(order_id, sl))
        elif roll < 0.4 and tp_state in ("NONE", "CANCELLED", "REJECTED"):
            self.record(await self.intake.set_tp(order_id, tp))
        elif roll < 0.5 and sl_state == "ACTIVE":
            self.record(await self.intake.cancel_sl(order_id))
        elif roll < 0.6 and tp_state == "ACTIVE":
            self.record(await self.intake.cancel_tp(order_id))
        elif roll < 0.8:
            self.record(await self.intake.close(order_id))

    async def settle(self) -> None:
        """Close every position and cancel every pending order (an LP refusal: again)."""
        for _ in range(30):
            await self.synced_quotes()
            self.tap.phase = "settle"
            open_ones = []
            for order_id in list(self.owner):
                known = await self._status(order_id)
                if known is None or known[0].is_final:
                    continue
                open_ones.append((order_id, known[0]))
            if not open_ones:
                return
            for order_id, status in open_ones:
                if status is OrderStatus.OPEN:
                    self.record(await self.intake.close(order_id))
                elif status is OrderStatus.PENDING:
                    self.record(await self.intake.cancel_pending(order_id))
            await self.quiet()
        raise AssertionError("orders still not final after 30 rounds")


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_2000_orders_reconcile_and_quality_equals_the_simulators_book(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    via = ViaFix(services, MESSY_LP, tmp_path / "fix", seed=21, tick_interval_s=3600)
    rng = random.Random(22)
    seed = demo_seed(12, rng, via.feed)
    await apply_seed(seed, services.state, services.database)
    tap = BookTap(via, services, monkeypatch)
    pipeline = EmbeddedPipeline(services, lp=via, rebuild=False)
    await pipeline.start()
    await via.simulator.stop_feed()  # from now on prices move only when the driver steps them
    intake = OrderIntake(services)
    driver = WaveDriver(via, pipeline, intake, services, seed, rng, tap)
    try:
        await driver.run()
        await intake.shutdown()
        await driver.quiet()
    finally:
        await pipeline.stop()  # the gateway writes its last records on its way out

    # -- the books
    assert driver.placed == ORDERS, (driver.placed, driver.refused)
    report = await reconcile(services.database, services.state)
    assert report.ok, report.differences[:5]
    assert not tap.orphans  # every report the book produced answers a request it received

    # -- one record per request the LP received, equal to what its book answered
    assert isinstance(services.database, SqlDatabase)
    rows = {e.lifecycle_id: e async for e in SqlLpExecutionStore(services.database).iter()}
    assert set(rows) == set(tap.records)
    assert len(via.server.received) == len(rows)  # every request reached the LP once
    assert {e.kind for e in rows.values()} == set(RequestKind)
    expected = {lid: expected_of(record, seed) for lid, record in tap.records.items()}
    for lid, row in rows.items():
        want, measured = expected[lid], figures(row)
        got = Expected(
            row.status.value,
            row.cum_qty,
            row.avg_px,
            row.reject_reason,
            measured.slippage_pips,
            measured.slippage_usd,
        )
        book = tap.records[lid]
        assert got == want, (
            book.phase,
            book.request,
            book.conversion,
            (row.usd_pair, row.usd_bid, row.usd_ask, row.sent_at, book.received_at),
        )
        # the latency spans the LP's own: sent before it arrived, answered after it left
        book = tap.records[lid]
        assert row.first_report_at is not None
        assert row.sent_at <= book.received_at
        assert row.first_report_at >= book.received_at + timedelta(milliseconds=0.5)

    # -- the per-LP summary (what ``execflow lp quality`` prints) against the book, by hand
    (quality,) = summarise(rows.values())
    records = list(tap.records.values())
    market = [r for r in records if r.request.kind in (RequestKind.OPEN, RequestKind.CLOSE)]
    assert quality.lp == "sim"
    assert quality.requests == quality.answered == len(records)

    # on the wire a cancel is a cancel (F): the LP cannot tell a pending order's from a leg's
    def wire_kinds(kinds: dict[str, int]) -> Counter[str]:
        return Counter({k: n for k, n in kinds.items() if not k.startswith("CANCEL")}) + Counter(
            {"CANCEL": sum(n for k, n in kinds.items() if k.startswith("CANCEL"))}
        )

    assert wire_kinds(quality.requests_by_kind) == wire_kinds(
        Counter(r.request.kind.value for r in records)
    )
    assert quality.market_orders == len(market)
    lots_requested = sum((r.request.qty for r in market), Decimal(0))
    lots_filled = sum((expected[r.request.lifecycle_id].cum_qty for r in market), Decimal(0))
    assert quality.lots_requested == lots_requested
    assert quality.lots_filled == lots_filled
    assert quality.fill_ratio == lots_filled / lots_requested
    rejects = Counter(
        expected[lid].reject_reason for lid in expected if expected[lid].status == "REJECTED"
    )
    assert quality.rejected == sum(rejects.values()) > 0
    assert quality.reject_ratio == Decimal(quality.rejected) / len(records)
    assert quality.rejects_by_reason == dict(rejects)
    slips = [e for e in expected.values() if e.slippage_pips is not None]
    assert quality.slippage.count == len(slips)
    drawn = [e.slippage_pips for e in slips if e.slippage_pips is not None]
    assert quality.slippage.favourable == sum(p > 0 for p in drawn)
    assert quality.slippage.adverse == sum(p < 0 for p in drawn)
    assert quality.slippage.adverse > 0  # the LP's slippage draws are there
    pips = [e.slippage_pips for e in slips if e.slippage_pips is not None]
    assert quality.slippage.mean_pips == sum(pips, Decimal(0)) / len(pips)
    usd = [e.slippage_usd for e in slips if e.slippage_usd is not None]
    assert quality.slippage.total_usd == sum(usd, Decimal(0))
    assert quality.fill.count == sum(
        1 for r in market if expected[r.request.lifecycle_id].cum_qty > 0
    )
    # resting orders filled on price steps, partial fills and reports of every status came
    statuses = Counter(r.ord_status for record in records for r in record.reports)
    assert statuses[ReportStatus.PARTIALLY_FILLED] > 0 and statuses[ReportStatus.MODIFY] > 0
    filled_legs = [
        lid
        for lid, e in expected.items()
        if e.cum_qty > 0
        and tap.records[lid].request.kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP)
    ]
    assert filled_legs
