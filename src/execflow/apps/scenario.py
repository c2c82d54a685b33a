"""Scenario driver: many accounts trading a realistic mix through the intake API.

New orders (market, limit, stop; some with SL/TP) are paced at a target rate or sent as
fast as the intake allows (a few in flight at once); between them the driver acts on
orders it placed earlier: modifies and cancels pending orders, sets and cancels SL/TP,
closes positions. At the end it closes every position and cancels every pending order,
round after round (an LP reject puts an order back), until everything is final; it gives
up when no order has become final for ``settle_stall_s``, or at the latest
``settle_timeout_s`` after closing out began (``execflow.apps.settle``), and says which
orders were not final, in which status, and why it stopped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from execflow.apps.settle import SettleWatch
from execflow.backends.state import StateStore
from execflow.clock import Clock, SystemClock
from execflow.domain.enums import OrderStatus, OrderType, Side
from execflow.domain.models import InstrumentConfig
from execflow.errors import ExecflowError
from execflow.pipeline.intake import IntakeResult, OrderIntake
from execflow.pipeline.seed import Seed
from execflow.sim.feed import PriceFeed

__all__ = ["Progress", "ScenarioConfig", "ScenarioDriver", "ScenarioResult"]

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``: phase is ``orders`` or ``settle``."""

_IN_FLIGHT = frozenset(
    {
        OrderStatus.QUEUED,
        OrderStatus.PENDING_QUEUED,
        OrderStatus.MODIFYING,
        OrderStatus.CANCELLING,
        OrderStatus.CLOSING,
    }
)
_PENDING_TYPES = (
    OrderType.BUY_LIMIT,
    OrderType.SELL_LIMIT,
    OrderType.BUY_STOP,
    OrderType.SELL_STOP,
)


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """Size and mix of a run.

    ``max_live_per_account`` keeps accounts realistic (a handful of open positions and
    resting orders each): above it, an account's oldest orders are closed or cancelled
    before it places a new one. ``max_backlog`` is the backpressure: when more messages
    than that wait in the pipeline's queues, the driver pauses (as fast as possible means
    as fast as the pipeline absorbs, so latencies stay those of a loaded system, not of
    an ever-growing queue).

    Closing out waits while orders keep reaching a final status: it stops when none has
    for ``settle_stall_s``, and in any case ``settle_timeout_s`` after it began.
    """

    orders: int = 5000
    rate_per_s: float = 0.0
    concurrency: int = 8
    market_share: float = 0.65
    protection_share: float = 0.3
    follow_up_share: float = 0.6
    max_live_per_account: int = 8
    max_backlog: int = 400
    settle_timeout_s: float = 600.0
    settle_stall_s: float = 60.0
    settle_poll_s: float = 0.05


@dataclass
class ScenarioResult:
    """What the driver did and whether everything ended final."""

    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    orders_placed: int = 0
    final_statuses: Counter[str] = field(default_factory=Counter)
    unsettled: list[str] = field(default_factory=list)
    unsettled_statuses: Counter[str] = field(default_factory=Counter)
    """The status each order not final was last seen in (``missing``: not in the store)."""
    settle_stop: str | None = None
    """Why closing out gave up (``stalled`` or ``limit``); None when everything ended."""
    elapsed_s: float = 0.0
    settle_s: float = 0.0
    settle_rounds: int = 0
    backpressure_waits: int = 0
    drain_timeouts: int = 0
    unsent: int = 0
    """Requests the intake deferred (an outage) and still had not sent when settling began."""

    @property
    def settled(self) -> bool:
        """True when every order reached a final status."""
        return not self.unsettled and not self.unsent


class ScenarioDriver:
    """Drives one scenario through ``OrderIntake``; reads order states from the store."""

    def __init__(
        self,
        intake: OrderIntake,
        state: StateStore,
        feed: PriceFeed,
        seed: Seed,
        config: ScenarioConfig,
        rng: random.Random,
        drain: Callable[[], Awaitable[None]],
        progress: Progress | None = None,
        backlog: Callable[[], Awaitable[int]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._intake = intake
        self._state = state
        self._feed = feed
        self._seed = seed
        self._config = config
        self._rng = rng
        self._drain = drain
        self._backlog = backlog
        self._clock = clock or SystemClock()
        self._progress = progress or (lambda _phase, _done, _total: None)
        self._accounts = [a for a in seed.accounts]
        self._symbols = [s for s in feed.symbols if seed.instrument(seed.accounts[0].group, s)]
        self._owner: dict[str, str] = {}
        self._live: list[str] = []
        self._live_by_account: dict[str, list[str]] = {a.account_id: [] for a in seed.accounts}
        self.result = ScenarioResult()

    async def run(self) -> ScenarioResult:
        """Place every order, then settle; returns the result (also kept on ``result``)."""
        started = time.monotonic()
        await self._place_all(started)
        await self._settle()
        self.result.elapsed_s = time.monotonic() - started
        return self.result

    # -- phase 1: trading --------------------------------------------------------------------
    async def _place_all(self, started: float) -> None:
        config = self._config
        slots = asyncio.Semaphore(config.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one(step: Callable[[], Awaitable[None]]) -> None:
            try:
                await step()
            except ExecflowError as exc:
                # a backend outage (the state store or the broker away): this step is
                # lost, like a client's request that failed; the scenario goes on
                self.result.refused[f"error:{type(exc).__name__}"] += 1
            finally:
                slots.release()

        for index in range(config.orders):
            if config.rate_per_s > 0:
                due = started + index / config.rate_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._backlog is not None and index % 25 == 0:
                await self._wait_for_room()
            await slots.acquire()
            task = asyncio.create_task(one(self._new_order))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if self._live and self._rng.random() < config.follow_up_share:
                await slots.acquire()
                task = asyncio.create_task(one(self._follow_up))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            self._progress("orders", index + 1, config.orders)
        if tasks:
            await asyncio.gather(*tasks)

    async def _wait_for_room(self) -> None:
        assert self._backlog is not None
        while await self._backlog_or_full() > self._config.max_backlog:
            self.result.backpressure_waits += 1
            await asyncio.sleep(0.02)

    async def _backlog_or_full(self) -> int:
        """The pipeline's backlog; while the broker cannot tell (an outage), no room."""
        assert self._backlog is not None
        try:
            return await self._backlog()
        except ExecflowError:
            await asyncio.sleep(0.5)
            return self._config.max_backlog + 1

    async def _new_order(self) -> None:
        account = self._rng.choice(self._accounts)
        await self._make_room(account.account_id)
        symbol = self._rng.choice(self._symbols)
        instrument = self._seed.instrument(account.group, symbol)
        quote = self._feed.quote(symbol)
        if instrument is None or quote is None:
            return
        qty = instrument.lot_step * self._rng.randint(1, 10) if instrument.lot_step else Decimal(1)
        qty = max(qty, instrument.min_lots)
        hs = instrument.half_spread
        bid, ask = quote.bid - hs, quote.ask + hs
        protect = self._rng.random() < self._config.protection_share
        if self._rng.random() < self._config.market_share:
            side = self._rng.choice((Side.BUY, Side.SELL))
            reference = bid if side is Side.BUY else ask
            sl, tp = self._protection(side, reference, symbol) if protect else (None, None)
            result = await self._intake.open_market(account.account_id, symbol, side, qty, sl, tp)
        else:
            kind = self._rng.choice(_PENDING_TYPES)
            price = self._pending_price(kind, bid, ask, symbol)
            side = kind.side or Side.BUY
            sl, tp = self._protection(side, price, symbol) if protect else (None, None)
            result = await self._intake.place_pending(
                account.account_id, symbol, kind, qty, price, sl, tp
            )
        self._record(result)
        if result.accepted and result.order_id is not None:
            self.result.orders_placed += 1
            self._owner[result.order_id] = account.account_id
            self._live.append(result.order_id)
            self._live_by_account[account.account_id].append(result.order_id)

    async def _make_room(self, account_id: str) -> None:
        """Close or cancel the account's oldest orders while it has too many live ones."""
        live = self._live_by_account[account_id]
        for order_id in list(live[: max(0, len(live) - self._config.max_live_per_account + 1)]):
            found = await self._state.get_order(account_id, order_id)
            status = OrderStatus(found.data["status"]) if found is not None else None
            if status is None or status.is_final:
                self._forget(order_id)
            elif status is OrderStatus.OPEN:
                self._record(await self._intake.close(order_id))
            elif status is OrderStatus.PENDING:
                self._record(await self._intake.cancel_pending(order_id))

    async def _follow_up(self) -> None:
        order_id = self._rng.choice(self._live)
        found = await self._state.get_order(self._owner[order_id], order_id)
        if found is None:
            return
        data = found.data
        status = OrderStatus(data["status"])
        if status.is_final:
            self._forget(order_id)
            return
        roll = self._rng.random()
        if status is OrderStatus.PENDING:
            await self._follow_up_pending(order_id, data, roll)
        elif status is OrderStatus.OPEN:
            await self._follow_up_open(order_id, data, roll)

    async def _follow_up_pending(self, order_id: str, data: dict[str, Any], roll: float) -> None:
        if roll < 0.6:
            quote = self._feed.quote(data["symbol"])
            instrument = self._instrument(order_id, data["symbol"])
            if quote is None or instrument is None:
                return
            hs = instrument.half_spread
            kind = OrderType(data["order_type"])
            price = self._pending_price(kind, quote.bid - hs, quote.ask + hs, data["symbol"])
            self._record(await self._intake.modify_pending(order_id, price))
        else:
            self._record(await self._intake.cancel_pending(order_id))

    async def _follow_up_open(self, order_id: str, data: dict[str, Any], roll: float) -> None:
        intake = self._intake
        sl_state, tp_state = data["sl"]["state"], data["tp"]["state"]
        if roll < 0.15 and sl_state in ("NONE", "CANCELLED", "REJECTED"):
            level = self._leg_price(order_id, data, stop=True)
            if level is not None:
                self._record(await intake.set_sl(order_id, level))
        elif roll < 0.3 and tp_state in ("NONE", "CANCELLED", "REJECTED"):
            level = self._leg_price(order_id, data, stop=False)
            if level is not None:
                self._record(await intake.set_tp(order_id, level))
        elif roll < 0.35 and sl_state == "ACTIVE":
            self._record(await intake.cancel_sl(order_id))
        elif roll < 0.4 and tp_state == "ACTIVE":
            self._record(await intake.cancel_tp(order_id))
        else:
            self._record(await intake.close(order_id))

    # -- phase 2: close everything ------------------------------------------------------------
    async def _settle(self) -> None:
        config = self._config
        watch = SettleWatch(self._clock, config.settle_stall_s, config.settle_timeout_s)
        try:
            await self._settle_rounds(watch)
        finally:
            self.result.settle_s = watch.elapsed_s()

    async def _settle_rounds(self, watch: SettleWatch) -> None:
        config = self._config
        total = len(self._owner)
        remaining = list(self._owner)
        finals: Counter[str] = Counter()
        # requests the intake could not send during an outage go out first
        self.result.unsent = await self._intake.flush(watch.left_s())
        while True:
            try:
                await self._drain()
            except (TimeoutError, ExecflowError):
                # still busy (or the broker away): look at the orders anyway; the watch
                # decides when to give up
                self.result.drain_timeouts += 1
            self.result.settle_rounds += 1
            still: list[str] = []
            last_seen: Counter[str] = Counter()
            for order_id in remaining:
                try:
                    status = await self._settle_one(order_id)
                except ExecflowError as exc:
                    # a backend outage: look at this order again next round
                    self.result.refused[f"error:{type(exc).__name__}"] += 1
                    status = None
                if status is not None and status.is_final:
                    # a final status never changes again: no need to look twice
                    finals[status.value] += 1
                    continue
                still.append(order_id)
                last_seen[status.value if status is not None else "missing"] += 1
            remaining = still
            self._progress("settle", total - len(remaining), total)
            self.result.final_statuses = finals
            if not remaining:
                return
            watch.seen(total - len(remaining))
            stop = watch.stop()
            if stop is not None:
                self.result.unsettled = remaining
                self.result.unsettled_statuses = last_seen
                self.result.settle_stop = stop.value
                return
            await asyncio.sleep(config.settle_poll_s)

    async def _settle_one(self, order_id: str) -> OrderStatus | None:
        """Close or cancel one order that is not final yet; its status (None: not found)."""
        found = await self._state.get_order(self._owner[order_id], order_id)
        if found is None:
            return None
        status = OrderStatus(found.data["status"])
        if status is OrderStatus.OPEN:
            self._record(await self._intake.close(order_id))
        elif status is OrderStatus.PENDING:
            self._record(await self._intake.cancel_pending(order_id))
        return status

    # -- prices -------------------------------------------------------------------------------
    def _distance(self, symbol: str, low: int, high: int) -> Decimal:
        spec = self._feed.spec(symbol)
        if spec is None:
            return Decimal(0)
        return spec.tick * round(spec.sigma_ticks * self._rng.randint(low, high))

    def _pending_price(self, kind: OrderType, bid: Decimal, ask: Decimal, symbol: str) -> Decimal:
        distance = self._distance(symbol, 1, 12)
        return {
            OrderType.BUY_LIMIT: ask - distance,
            OrderType.SELL_LIMIT: bid + distance,
            OrderType.BUY_STOP: ask + distance,
            OrderType.SELL_STOP: bid - distance,
        }[kind]

    def _protection(self, side: Side, reference: Decimal, symbol: str) -> tuple[Decimal, Decimal]:
        """(sl, tp) around ``reference``: SL below and TP above for BUY, mirrored for SELL."""
        sl_gap = self._distance(symbol, 3, 20)
        tp_gap = self._distance(symbol, 3, 20)
        if side is Side.BUY:
            return reference - sl_gap, reference + tp_gap
        return reference + sl_gap, reference - tp_gap

    def _leg_price(self, order_id: str, data: dict[str, object], stop: bool) -> Decimal | None:
        symbol = str(data["symbol"])
        quote = self._feed.quote(symbol)
        instrument = self._instrument(order_id, symbol)
        if quote is None or instrument is None:
            return None
        hs = instrument.half_spread
        side = Side(str(data["side"]))
        reference = quote.bid - hs if side is Side.BUY else quote.ask + hs
        sl, tp = self._protection(side, reference, symbol)
        return sl if stop else tp

    def _instrument(self, order_id: str, symbol: str) -> InstrumentConfig | None:
        account_id = self._owner[order_id]
        group = next((a.group for a in self._accounts if a.account_id == account_id), "")
        return self._seed.instrument(group, symbol)

    # -- bookkeeping --------------------------------------------------------------------------
    def _record(self, result: IntakeResult) -> None:
        if result.accepted:
            self.result.accepted[result.action] += 1
        else:
            self.result.refused[result.reason or "unknown"] += 1

    def _forget(self, order_id: str) -> None:
        for live in (self._live, self._live_by_account[self._owner[order_id]]):
            if order_id in live:
                live.remove(order_id)
