"""Per-LP execution quality (issue 12, point 7): a record per request sent, its figures, a summary.

Pure. The gateway opens an ``LpExecution`` when it hands a request to its FIX engine and
folds every report of that request into it (``apply_report``). ``figures`` says what one
record measures; ``summarise`` aggregates records per LP. The gateway's log lines and
Prometheus metrics, and ``execflow lp quality`` over the records stored in the database,
all go through these functions: the figures cannot drift apart.

What is measured:

* request -> first report: from the gateway handing the request to the engine to the
  first report of its ClOrdID (any report: ack, fill, reject);
* request -> fill: to the first fill, for market orders (OPEN, CLOSE) only: a resting
  order fills when the price comes, which says nothing about the LP;
* slippage of every order with a fill: its average fill price against the reference,
  signed so that positive is in the client's favour: for a market order the quote the
  gateway held when it sent it (the ask for a buy, the bid for a sell), for a limit or
  stop order the requested level; in pips (the instrument's ``spread_pip``) and in USD
  (price difference x filled lots x contract size, converted from the profit currency
  with ``money.to_usd`` at the conversion quote the gateway held when it sent);
* fill ratio: lots filled / lots requested, over market orders;
* rejects: requests the LP refused, by reason (its text), over every request.

Reports are folded in whatever order they arrive, duplicates included: times keep the
earliest, quantities the largest cumulative one (CumQty 14, AvgPx 6: every FIX 4.4
ExecutionReport carries them), and a final status (filled, cancelled, rejected) is
never replaced. A report whose Symbol or Side contradicts the request is not counted.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from execflow.domain import money
from execflow.domain.enums import LpOrderType, RequestKind, Side
from execflow.domain.frozen import replace
from execflow.domain.messages import ExecutionReport, ProviderRequest
from execflow.domain.models import ZERO, InstrumentConfig, Prices, Quote

__all__ = [
    "MARKET_KINDS",
    "ExecutionFigures",
    "ExecutionStatus",
    "LatencyStats",
    "LpExecution",
    "LpQuality",
    "QualitySummary",
    "SlippageStats",
    "apply_report",
    "figures",
    "new_execution",
    "reason_label",
    "slippage",
    "summarise",
]

MARKET_KINDS = frozenset({RequestKind.OPEN, RequestKind.CLOSE})
"""Requests that fill now or never: the fill ratio and the fill latency are theirs."""

_RESTING_KINDS = frozenset(
    {
        RequestKind.PLACE_PENDING,
        RequestKind.MODIFY_PENDING,
        RequestKind.PLACE_SL,
        RequestKind.PLACE_TP,
    }
)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_REASON_MAX_CHARS = 200


class ExecutionStatus(StrEnum):
    """Where a request stands at the LP: SENT until a report came, then the report's status."""

    SENT = "SENT"
    PENDING = "PENDING"
    MODIFY = "MODIFY"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    EXECUTED = "EXECUTED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        """Filled, cancelled or rejected: no later report changes it."""
        return self in (
            ExecutionStatus.EXECUTED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.REJECTED,
        )


_RANK = {
    ExecutionStatus.SENT: 0,
    ExecutionStatus.PENDING: 1,
    ExecutionStatus.MODIFY: 1,
    ExecutionStatus.PARTIALLY_FILLED: 2,
}


@dataclass(frozen=True, slots=True)
class LpExecution:
    """One request sent to an LP and what its reports said (a row of ``lp_executions``).

    ``reference_px``: the quote held at sending (market orders) or the requested level.
    ``usd_pair`` / ``usd_bid`` / ``usd_ask``: the quote that converts the instrument's
    profit currency to USD, as held at sending (None when the currency is USD).
    """

    lifecycle_id: str
    lp: str
    order_id: str
    account_id: str
    kind: RequestKind
    symbol: str
    side: Side
    order_type: LpOrderType
    qty: Decimal
    sent_at: datetime
    reference_px: Decimal | None = None
    pip: Decimal | None = None
    contract_size: Decimal | None = None
    profit_currency: str | None = None
    usd_pair: str | None = None
    usd_bid: Decimal | None = None
    usd_ask: Decimal | None = None
    status: ExecutionStatus = ExecutionStatus.SENT
    first_report_at: datetime | None = None
    filled_at: datetime | None = None
    done_at: datetime | None = None
    cum_qty: Decimal = ZERO
    avg_px: Decimal | None = None
    reject_reason: str | None = None

    @property
    def is_market(self) -> bool:
        """An order that fills now or never (OPEN, CLOSE)."""
        return self.kind in MARKET_KINDS


def new_execution(
    request: ProviderRequest,
    lp: str,
    sent_at: datetime,
    quote: tuple[Decimal | None, Decimal | None],
    instrument: InstrumentConfig | None,
    usd_quote: Quote | None,
) -> LpExecution:
    """The record of ``request`` sent at ``sent_at``; ``quote`` is the (bid, ask) held then."""
    reference: Decimal | None = None
    if request.kind in MARKET_KINDS:
        bid, ask = quote
        reference = ask if request.side is Side.BUY else bid
    elif request.kind in _RESTING_KINDS:
        reference = request.stop_px if request.order_type is LpOrderType.STOP else request.price
    return LpExecution(
        lifecycle_id=request.lifecycle_id,
        lp=lp,
        order_id=request.order_id,
        account_id=request.account_id,
        kind=request.kind,
        symbol=request.symbol,
        side=request.side,
        order_type=request.order_type,
        qty=request.qty,
        sent_at=sent_at,
        reference_px=reference,
        pip=instrument.spread_pip if instrument is not None else None,
        contract_size=instrument.contract_size if instrument is not None else None,
        profit_currency=instrument.profit_currency if instrument is not None else None,
        usd_pair=usd_quote.symbol if usd_quote is not None else None,
        usd_bid=usd_quote.bid if usd_quote is not None else None,
        usd_ask=usd_quote.ask if usd_quote is not None else None,
    )


def _earliest(known: datetime | None, at: datetime) -> datetime:
    return at if known is None or at < known else known


def apply_report(execution: LpExecution, report: ExecutionReport, at: datetime) -> LpExecution:
    """``execution`` with ``report`` (received at ``at``) folded in; unchanged if not ours."""
    if (report.symbol is not None and report.symbol != execution.symbol) or (
        report.side is not None and report.side is not execution.side
    ):
        return execution
    changes: dict[str, Any] = {"first_report_at": _earliest(execution.first_report_at, at)}
    cum = report.cum_qty
    if report.ord_status.is_fill and cum is not None and cum > execution.cum_qty:
        price = report.avg_px or report.last_px
        if price is not None and price > 0:
            changes["cum_qty"] = cum
            changes["avg_px"] = price
            changes["filled_at"] = _earliest(execution.filled_at, at)
    status = ExecutionStatus(report.ord_status.value)
    current = execution.status
    if not current.is_final and (status.is_final or _RANK[status] >= _RANK[current]):
        changes["status"] = status
        if status.is_final:
            changes["done_at"] = at
        if status is ExecutionStatus.REJECTED:
            changes["reject_reason"] = _reason_text(report)
    return replace(execution, **changes)


def _reason_text(report: ExecutionReport) -> str:
    text = " ".join((report.reason or "rejected").split())
    return text[:_REASON_MAX_CHARS] or "rejected"


def reason_label(reason: str) -> str:
    """A metric label for a reject reason: lower-case words joined by ``_`` (40 chars)."""
    text = _NON_WORD.sub("_", reason.lower()).strip("_")
    return text[:40] or "unknown"


def slippage(side: Side, reference: Decimal, fill: Decimal) -> Decimal:
    """Price difference in the client's favour: a BUY filled below, a SELL above, is positive."""
    return reference - fill if side is Side.BUY else fill - reference


@dataclass(frozen=True, slots=True)
class ExecutionFigures:
    """What one record measures; None where it does not apply (yet)."""

    first_report_ms: float | None = None
    fill_ms: float | None = None
    slippage_px: Decimal | None = None
    slippage_pips: Decimal | None = None
    slippage_usd: Decimal | None = None


def _ms(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    return (end - start).total_seconds() * 1000.0


def figures(execution: LpExecution) -> ExecutionFigures:
    """Latencies and slippage of one record (the one definition, see the module doc)."""
    first_ms = _ms(execution.sent_at, execution.first_report_at)
    fill_ms = _ms(execution.sent_at, execution.filled_at) if execution.is_market else None
    reference, avg = execution.reference_px, execution.avg_px
    if reference is None or avg is None or execution.cum_qty <= 0:
        return ExecutionFigures(first_ms, fill_ms)
    diff = slippage(execution.side, reference, avg)
    pip = execution.pip
    pips = diff / pip if pip is not None and pip > 0 else None
    return ExecutionFigures(first_ms, fill_ms, diff, pips, _usd(execution, diff))


def _usd(execution: LpExecution, diff: Decimal) -> Decimal | None:
    currency, size = execution.profit_currency, execution.contract_size
    if currency is None or size is None:
        return None
    amount = diff * execution.cum_qty * size
    prices = Prices()
    pair, bid, ask = execution.usd_pair, execution.usd_bid, execution.usd_ask
    if pair is not None and bid is not None and ask is not None:
        prices = Prices({pair: Quote(pair, bid, ask)})
    try:
        return money.to_usd(amount, currency, prices, money.Direction.of_amount(amount)).usd
    except money.MissingRate:
        return None


# -- the summary -------------------------------------------------------------------------------


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """A latency distribution in milliseconds (nearest-rank percentiles)."""

    count: int = 0
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencyStats:
        """The distribution of ``values``."""
        ordered = sorted(values)
        if not ordered:
            return cls()
        return cls(
            count=len(ordered),
            mean_ms=sum(ordered) / len(ordered),
            p50_ms=_percentile(ordered, 0.50),
            p95_ms=_percentile(ordered, 0.95),
            p99_ms=_percentile(ordered, 0.99),
            max_ms=ordered[-1],
        )


@dataclass(frozen=True, slots=True)
class SlippageStats:
    """Slippage of the filled orders with a reference; positive is in the client's favour."""

    count: int = 0
    favourable: int = 0
    zero: int = 0
    adverse: int = 0
    mean_pips: Decimal | None = None
    min_pips: Decimal | None = None
    max_pips: Decimal | None = None
    total_usd: Decimal = ZERO
    mean_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LpQuality:
    """One LP's execution quality over a set of records."""

    lp: str
    requests: int
    requests_by_kind: dict[str, int]
    answered: int
    first_report: LatencyStats
    market_orders: int
    lots_requested: Decimal
    lots_filled: Decimal
    fill_ratio: Decimal | None
    fill: LatencyStats
    rejected: int
    reject_ratio: Decimal | None
    rejects_by_reason: dict[str, int]
    slippage: SlippageStats
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: decimals as strings, times ISO 8601, milliseconds as numbers."""
        out: dict[str, Any] = _plain(self)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


@dataclass
class _Lp:
    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    first_ms: list[float] = field(default_factory=list)
    fill_ms: list[float] = field(default_factory=list)
    market: int = 0
    lots_requested: Decimal = ZERO
    lots_filled: Decimal = ZERO
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    pips: list[Decimal] = field(default_factory=list)
    signs: Counter[int] = field(default_factory=Counter)
    usd: list[Decimal] = field(default_factory=list)
    first_sent: datetime | None = None
    last_sent: datetime | None = None


class QualitySummary:
    """Folds records (one at a time: a database may hold millions) into ``LpQuality`` per LP."""

    def __init__(self) -> None:
        self._lps: defaultdict[str, _Lp] = defaultdict(_Lp)

    def add(self, execution: LpExecution) -> None:
        """Count one record."""
        lp = self._lps[execution.lp]
        lp.requests += 1
        lp.by_kind[execution.kind.value] += 1
        sent = execution.sent_at
        lp.first_sent = sent if lp.first_sent is None or sent < lp.first_sent else lp.first_sent
        lp.last_sent = sent if lp.last_sent is None or sent > lp.last_sent else lp.last_sent
        measured = figures(execution)
        if measured.first_report_ms is not None:
            lp.answered += 1
            lp.first_ms.append(measured.first_report_ms)
        if execution.is_market:
            lp.market += 1
            lp.lots_requested += execution.qty
            lp.lots_filled += execution.cum_qty
            if measured.fill_ms is not None:
                lp.fill_ms.append(measured.fill_ms)
        if execution.status is ExecutionStatus.REJECTED:
            lp.rejected += 1
            lp.reasons[execution.reject_reason or "rejected"] += 1
        if measured.slippage_px is not None:
            lp.signs[(measured.slippage_px > 0) - (measured.slippage_px < 0)] += 1
            if measured.slippage_pips is not None:
                lp.pips.append(measured.slippage_pips)
            if measured.slippage_usd is not None:
                lp.usd.append(measured.slippage_usd)

    def result(self) -> list[LpQuality]:
        """Every LP seen, by name."""
        return [self._quality(name, self._lps[name]) for name in sorted(self._lps)]

    @staticmethod
    def _quality(name: str, lp: _Lp) -> LpQuality:
        samples = sum(lp.signs.values())
        slip = SlippageStats(
            count=samples,
            favourable=lp.signs[1],
            zero=lp.signs[0],
            adverse=lp.signs[-1],
            mean_pips=sum(lp.pips, ZERO) / len(lp.pips) if lp.pips else None,
            min_pips=min(lp.pips) if lp.pips else None,
            max_pips=max(lp.pips) if lp.pips else None,
            total_usd=sum(lp.usd, ZERO),
            mean_usd=sum(lp.usd, ZERO) / len(lp.usd) if lp.usd else None,
        )
        return LpQuality(
            lp=name,
            requests=lp.requests,
            requests_by_kind=dict(sorted(lp.by_kind.items())),
            answered=lp.answered,
            first_report=LatencyStats.of(lp.first_ms),
            market_orders=lp.market,
            lots_requested=lp.lots_requested,
            lots_filled=lp.lots_filled,
            fill_ratio=lp.lots_filled / lp.lots_requested if lp.lots_requested > 0 else None,
            fill=LatencyStats.of(lp.fill_ms),
            rejected=lp.rejected,
            reject_ratio=Decimal(lp.rejected) / lp.requests if lp.requests else None,
            rejects_by_reason=dict(sorted(lp.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            slippage=slip,
            first_sent_at=lp.first_sent,
            last_sent_at=lp.last_sent,
        )


def summarise(executions: Iterable[LpExecution]) -> list[LpQuality]:
    """``LpQuality`` per LP of ``executions``."""
    summary = QualitySummary()
    for execution in executions:
        summary.add(execution)
    return summary.result()
