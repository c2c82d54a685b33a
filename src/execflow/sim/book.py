"""The simulated LP's own order book: what it was asked, what rests, what is filled.

Pure and synchronous (no I/O, no awaits): ``LpBook.handle`` answers one request and
``LpBook.on_quotes`` fills resting orders the price crossed; both return the reports to
send. Orders are keyed by every ClOrdID they were known by (placement and modifications),
and a request whose lifecycle id was already answered gets the same reports again,
never a second order.

The book forgets what nothing can refer to any more, so it stays the same size however
long it runs: a finished order (filled or cancelled) is kept among the latest
``finished_kept`` finished orders, a flat position and the legs of a position as they
finish are dropped, and answers are the latest ``answers_kept``.
"""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from execflow.clock import Clock, IdGenerator
from execflow.domain.enums import LpOrderType, ReportStatus, RequestKind, Side
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import Quote
from execflow.sim.config import LpConfig

__all__ = ["Answer", "LpBook", "LpOrder", "LpStatus", "Outgoing"]

_LOT = Decimal("0.01")
_ZERO = Decimal(0)

_NEW_ORDER_REJECTS = (
    "Insufficient liquidity",
    "Price off quotes",
    "Order size exceeds LP limit",
    "Trading temporarily halted",
    "Credit limit exceeded",
)
_CHANGE_REJECTS = ("Order locked by dealer", "Request throttled")
_TOO_LATE_CANCEL = "Too late to cancel"
_TOO_LATE_MODIFY = "Too late to modify"
_UNKNOWN_ORDER = "Unknown order"
_NO_POSITION = "No open position"

_RESTS = frozenset({RequestKind.PLACE_PENDING, RequestKind.PLACE_SL, RequestKind.PLACE_TP})
_CANCELS = frozenset({RequestKind.CANCEL_PENDING, RequestKind.CANCEL_SL, RequestKind.CANCEL_TP})


class LpStatus(StrEnum):
    """State of an order inside the LP."""

    RESTING = "RESTING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


@dataclass(slots=True)
class LpOrder:
    """One order at the LP; ``clordid`` is the latest ClOrdID it answers to."""

    lp_order_id: str
    clordid: str
    kind: RequestKind
    order_id: str
    symbol: str
    side: Side
    order_type: LpOrderType
    qty: Decimal
    price: Decimal | None = None
    stop_px: Decimal | None = None
    status: LpStatus = LpStatus.RESTING
    cum_qty: Decimal = _ZERO
    known_as: list[str] = field(default_factory=list)

    @property
    def is_leg(self) -> bool:
        """True for stop-loss and take-profit legs (they close a position)."""
        return self.kind in (RequestKind.PLACE_SL, RequestKind.PLACE_TP)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A report to send and the client order it is about (for the log line)."""

    report: ExecutionReport
    order_id: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What the LP sends for one request (or one price move); ``resent`` on a repeat."""

    reports: tuple[Outgoing, ...]
    event: str
    resent: bool = False


# A re-sent request (same ClOrdID) comes back within seconds of the first, never after
# tens of thousands of newer requests: remembering the latest answers keeps the LP
# idempotent where it matters without its memory growing for as long as it runs.
ANSWERS_KEPT = 20_000
# A cancel or modify racing a fill arrives within seconds of it too: the latest finished
# orders are enough for it to be told "too late" (with the LP order id), not "unknown".
FINISHED_KEPT = 20_000


@dataclass(slots=True)
class _Counters:
    exec_ids: int = 0
    lp_orders: int = 0


@dataclass
class LpBook:
    """The LP's memory; one instance per simulator."""

    config: LpConfig
    rng: random.Random
    clock: Clock
    ids: IdGenerator
    tick_of: Callable[[str], Decimal] = field(default=lambda _s: Decimal("0.00001"))
    _token: str = ""
    _counters: _Counters = field(default_factory=_Counters)
    _by_clordid: dict[str, LpOrder] = field(default_factory=dict)  # resting orders only
    _resting: dict[str, dict[str, LpOrder]] = field(default_factory=dict)
    _positions: dict[str, Decimal] = field(default_factory=dict)
    _answered: OrderedDict[str, Answer] = field(default_factory=OrderedDict)
    answers_kept: int = ANSWERS_KEPT
    _legs: dict[str, list[LpOrder]] = field(default_factory=dict)
    _finished: OrderedDict[str, LpOrder] = field(default_factory=OrderedDict)
    finished_kept: int = FINISHED_KEPT

    def __post_init__(self) -> None:
        self._token = self.ids.new_id()[:12]

    # -- reading ------------------------------------------------------------------------
    def order(self, clordid: str) -> LpOrder | None:
        """The LP order a ClOrdID refers to (resting or recently finished), or None."""
        found = self._by_clordid.get(clordid)
        return found if found is not None else self._finished.get(clordid)

    def position(self, order_id: str) -> Decimal:
        """Lots the LP holds open for a client order (0 when flat)."""
        return self._positions.get(order_id, _ZERO)

    def resting_count(self) -> int:
        """Orders resting at the LP (pending orders and legs)."""
        return sum(len(v) for v in self._resting.values())

    def remembered(self) -> dict[str, int]:
        """How many entries each of the book's memories holds (it must not grow unbounded)."""
        return {
            "clordids": len(self._by_clordid),
            "finished": len(self._finished),
            "positions": len(self._positions),
            "legs": sum(len(v) for v in self._legs.values()),
            "answers": len(self._answered),
        }

    # -- requests -----------------------------------------------------------------------
    def handle(self, request: ProviderRequest, quote: Quote | None) -> Answer:
        """Answer one request; a lifecycle id seen before gets its earlier answer again."""
        earlier = self._answered.get(request.lifecycle_id)
        if earlier is not None:
            return replace(earlier, resent=True)
        answer = self._answer(request, quote)
        self._answered[request.lifecycle_id] = answer
        if len(self._answered) > self.answers_kept:
            self._answered.popitem(last=False)
        return answer

    def _answer(self, request: ProviderRequest, quote: Quote | None) -> Answer:
        kind = request.kind
        if kind in _CANCELS:
            return self._cancel(request)
        if kind is RequestKind.MODIFY_PENDING:
            return self._modify(request, quote)
        if kind is RequestKind.CLOSE and self.position(request.order_id) <= 0:
            return self._reject(request, _NO_POSITION)
        if quote is None:
            return self._reject(request, "Unknown symbol")
        if self._draw(self.config.reject_rate):
            pool = _NEW_ORDER_REJECTS if kind is not RequestKind.CLOSE else _CHANGE_REJECTS
            return self._reject(request, pool[self.rng.randrange(len(pool))])
        order = LpOrder(
            lp_order_id=self._lp_order_id(),
            clordid=request.lifecycle_id,
            kind=kind,
            order_id=request.order_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            qty=request.qty,
            price=request.price,
            stop_px=request.stop_px,
        )
        self._know(order, request.lifecycle_id)
        if kind in _RESTS:
            self._rest(order)
            reports = [self._status(order, ReportStatus.PENDING)]
            reports.extend(self._try_fill(order, quote))
            return Answer(tuple(reports), "ACCEPTED")
        reports = []
        if kind is RequestKind.OPEN and self._draw(self.config.ack_rate):
            reports.append(self._status(order, ReportStatus.PENDING))
        if kind is RequestKind.CLOSE:
            order.qty = min(order.qty, self.position(request.order_id))
        price = self._market_price(order.side, quote, slip=True)
        reports.extend(self._fill(order, price))
        return Answer(tuple(reports), "FILLED")

    def _cancel(self, request: ProviderRequest) -> Answer:
        target = self.order(request.orig_lifecycle_id or "")
        if target is None:
            return self._reject(request, _UNKNOWN_ORDER)
        if target.status is not LpStatus.RESTING:
            return self._reject(request, _TOO_LATE_CANCEL, target)
        if self._draw(self.config.reject_rate):
            pool = _CHANGE_REJECTS
            return self._reject(request, pool[self.rng.randrange(len(pool))], target)
        target.status = LpStatus.CANCELLED
        self._resting.get(target.symbol, {}).pop(target.lp_order_id, None)
        self._finish(target)
        report = self._report(
            target,
            ReportStatus.CANCELLED,
            lifecycle_id=request.lifecycle_id,
            orig_lifecycle_id=target.clordid,
            leaves_qty=_ZERO,
            reason="Cancelled on request",
        )
        return Answer((Outgoing(report, target.order_id),), "CANCELLED")

    def _modify(self, request: ProviderRequest, quote: Quote | None) -> Answer:
        target = self.order(request.orig_lifecycle_id or "")
        if target is None:
            return self._reject(request, _UNKNOWN_ORDER)
        if target.status is not LpStatus.RESTING:
            return self._reject(request, _TOO_LATE_MODIFY, target)
        if self._draw(self.config.reject_rate):
            pool = _CHANGE_REJECTS
            return self._reject(request, pool[self.rng.randrange(len(pool))], target)
        previous = target.clordid
        target.clordid = request.lifecycle_id
        target.price = request.price
        target.stop_px = request.stop_px
        self._know(target, request.lifecycle_id)
        report = self._report(
            target,
            ReportStatus.MODIFY,
            orig_lifecycle_id=previous,
            leaves_qty=target.qty - target.cum_qty,
            price=target.price,
            stop_px=target.stop_px,
        )
        reports = [Outgoing(report, target.order_id)]
        if quote is not None:
            reports.extend(self._try_fill(target, quote))
        return Answer(tuple(reports), "MODIFIED")

    def _reject(
        self, request: ProviderRequest, reason: str, target: LpOrder | None = None
    ) -> Answer:
        report = ExecutionReport(
            exec_id=self._exec_id(),
            ord_status=ReportStatus.REJECTED,
            lifecycle_id=request.lifecycle_id,
            orig_lifecycle_id=request.orig_lifecycle_id,
            lp_order_id=target.lp_order_id if target is not None else None,
            cum_qty=_ZERO,
            leaves_qty=_ZERO,
            side=request.side,
            symbol=request.symbol,
            reason=reason,
            transact_time=self.clock.now(),
            provider=self.config.provider,
        )
        return Answer((Outgoing(report, request.order_id),), "REJECTED")

    # -- prices -------------------------------------------------------------------------
    def on_quotes(self, quotes: Iterable[Quote]) -> list[Outgoing]:
        """Fill every resting order the new quotes crossed."""
        out: list[Outgoing] = []
        for quote in quotes:
            book = self._resting.get(quote.symbol)
            if not book:
                continue
            for order in list(book.values()):
                out.extend(self._try_fill(order, quote))
        return out

    def _try_fill(self, order: LpOrder, quote: Quote) -> list[Outgoing]:
        if order.status is not LpStatus.RESTING:
            return []
        price = self._crossed(order, quote)
        if price is None:
            return []
        if order.is_leg:
            held = self.position(order.order_id)
            if held <= 0:
                # the position went flat: the leg waits for its cancel, it never reopens
                return []
            order.qty = min(order.qty, held)
        sibling = self._sibling(order) if order.is_leg else None
        self._resting.get(order.symbol, {}).pop(order.lp_order_id, None)
        fills = self._fill(order, price)
        if sibling is not None and self._draw(self.config.double_fill_rate):
            # the venue bug the pipeline must catch: on a gap, the other leg fills as well
            self._resting.get(sibling.symbol, {}).pop(sibling.lp_order_id, None)
            level = sibling.price if sibling.price is not None else sibling.stop_px
            fills.extend(
                self._fill(sibling, level or self._market_price(sibling.side, quote, False))
            )
        return fills

    def _sibling(self, leg: LpOrder) -> LpOrder | None:
        """The other resting leg of the same position, if any."""
        for other in self._legs.get(leg.order_id, ()):
            if other.kind is not leg.kind and other.status is LpStatus.RESTING:
                return other
        return None

    def _crossed(self, order: LpOrder, quote: Quote) -> Decimal | None:
        """The fill price when ``quote`` reaches the order's level, else None."""
        buy = order.side is Side.BUY
        if order.order_type is LpOrderType.LIMIT and order.price is not None:
            hit = quote.ask <= order.price if buy else quote.bid >= order.price
            return order.price if hit else None
        if order.order_type is LpOrderType.STOP and order.stop_px is not None:
            hit = quote.ask >= order.stop_px if buy else quote.bid <= order.stop_px
            return self._market_price(order.side, quote, slip=True) if hit else None
        return None

    def _market_price(self, side: Side, quote: Quote, slip: bool) -> Decimal:
        price = quote.ask if side is Side.BUY else quote.bid
        if slip and self.config.slippage_max_ticks > 0 and self._draw(self.config.slippage_rate):
            ticks = self.rng.randint(1, self.config.slippage_max_ticks)
            step = self.tick_of(quote.symbol) * ticks
            price = price + step if side is Side.BUY else max(price - step, step)
        return price

    # -- fills --------------------------------------------------------------------------
    def _fill(self, order: LpOrder, price: Decimal) -> list[Outgoing]:
        parts = self._split(order.qty)
        out: list[Outgoing] = []
        for index, qty in enumerate(parts):
            order.cum_qty += qty
            last = index == len(parts) - 1
            report = self._report(
                order,
                ReportStatus.EXECUTED if last else ReportStatus.PARTIALLY_FILLED,
                avg_px=price,
                cum_qty=order.cum_qty,
                last_px=price,
                last_qty=qty,
                leaves_qty=order.qty - order.cum_qty,
            )
            out.append(Outgoing(report, order.order_id))
        order.status = LpStatus.FILLED
        self._finish(order)
        held = self.position(order.order_id)
        opening = order.kind in (
            RequestKind.OPEN,
            RequestKind.PLACE_PENDING,
            RequestKind.MODIFY_PENDING,
        )
        left = held + order.qty if opening else held - order.qty
        if left > 0:
            self._positions[order.order_id] = left
        else:
            # flat (or short of zero after a double fill) reads the same as never opened;
            # a client order opens once, so nothing asks for this position again
            self._positions.pop(order.order_id, None)
            self._park_legs(order.order_id)
        return out

    def _park_legs(self, order_id: str) -> None:
        """Legs of a flat position can never fill: stop scanning them on every tick.

        They stay RESTING (known by ClOrdID), so their cancel is still confirmed.
        """
        for leg in self._legs.pop(order_id, []):
            self._resting.get(leg.symbol, {}).pop(leg.lp_order_id, None)

    def _split(self, qty: Decimal) -> list[Decimal]:
        lots = int(qty / _LOT)
        if lots < 2 or qty % _LOT != 0 or not self._draw(self.config.partial_rate):
            return [qty]
        pieces = min(lots, self.rng.randint(2, 3))
        cuts = sorted(self.rng.sample(range(1, lots), pieces - 1))
        bounds = [0, *cuts, lots]
        return [_LOT * (b - a) for a, b in itertools.pairwise(bounds)]

    # -- memory -------------------------------------------------------------------------
    def _know(self, order: LpOrder, clordid: str) -> None:
        """``order`` answers to ``clordid`` from now on (as well as to its earlier ones)."""
        order.known_as.append(clordid)
        self._by_clordid[clordid] = order

    def _finish(self, order: LpOrder) -> None:
        """A filled or cancelled order moves to the bounded memory of finished orders."""
        for clordid in order.known_as:
            self._by_clordid.pop(clordid, None)
            self._finished[clordid] = order
        while len(self._finished) > self.finished_kept:
            self._finished.popitem(last=False)
        if order.is_leg:
            legs = self._legs.get(order.order_id)
            if legs is not None:
                legs[:] = [leg for leg in legs if leg is not order]
                if not legs:
                    del self._legs[order.order_id]

    # -- building blocks ----------------------------------------------------------------
    def _rest(self, order: LpOrder) -> None:
        if order.is_leg:
            if self.position(order.order_id) <= 0:
                return
            self._legs.setdefault(order.order_id, []).append(order)
        self._resting.setdefault(order.symbol, {})[order.lp_order_id] = order

    def _status(self, order: LpOrder, status: ReportStatus) -> Outgoing:
        report = self._report(
            order,
            status,
            cum_qty=_ZERO,
            leaves_qty=order.qty,
            price=order.price,
            stop_px=order.stop_px,
        )
        return Outgoing(report, order.order_id)

    def _report(
        self,
        order: LpOrder,
        status: ReportStatus,
        *,
        lifecycle_id: str | None = None,
        orig_lifecycle_id: str | None = None,
        avg_px: Decimal | None = None,
        cum_qty: Decimal | None = None,
        last_px: Decimal | None = None,
        last_qty: Decimal | None = None,
        leaves_qty: Decimal | None = None,
        price: Decimal | None = None,
        stop_px: Decimal | None = None,
        reason: str | None = None,
    ) -> ExecutionReport:
        return ExecutionReport(
            exec_id=self._exec_id(),
            ord_status=status,
            lifecycle_id=lifecycle_id or order.clordid,
            orig_lifecycle_id=orig_lifecycle_id,
            lp_order_id=order.lp_order_id,
            avg_px=avg_px,
            cum_qty=cum_qty,
            last_px=last_px,
            last_qty=last_qty,
            leaves_qty=leaves_qty,
            price=price,
            stop_px=stop_px,
            side=order.side,
            symbol=order.symbol,
            reason=reason,
            transact_time=self.clock.now(),
            provider=self.config.provider,
        )

    def _exec_id(self) -> str:
        self._counters.exec_ids += 1
        return f"{self._token}-E{self._counters.exec_ids}"

    def _lp_order_id(self) -> str:
        self._counters.lp_orders += 1
        return f"{self._token}-L{self._counters.lp_orders}"

    def _draw(self, share: float) -> bool:
        return share > 0 and self.rng.random() < share
