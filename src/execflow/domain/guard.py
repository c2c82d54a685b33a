"""The report guard (DESIGN §11): a report that contradicts its order is never applied.

Runs before every transition, after the exec_id ledger check (a redelivered report that
was applied stays a duplicate). It compares what the report says with what the order
and the request the report answers say:

* symbol: the order's symbol (letters compared case-insensitively);
* side: the side the request kind must produce. Requests that open or rest an order
  (OPEN, PLACE/MODIFY/CANCEL_PENDING) trade the order's side; requests that close the
  position (CLOSE, the SL/TP legs and their cancels) trade the opposite side;
* quantities of a fill: CumQty and LastQty never above the order's quantity (``overfill``);
  LastQty-only fills are accumulated by the transitions, which refuse the one that
  would overfill the same way;
* fill price: AvgPx and LastPx inside a band around the quote of the moment
  (``price_out_of_band``); with no quote for the symbol the band cannot be checked and
  the fill goes on (conversions still need their own rates).

A field the report leaves out is not checked: real LPs omit Side and Symbol on some
messages (an OrderCancelReject carries neither), and absence contradicts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from execflow.domain.enums import RequestKind, Side
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Order, Prices
from execflow.domain.outcomes import OVERFILL, PRICE_OUT_OF_BAND, REPORT_MISMATCH, Mismatch

__all__ = ["DEFAULT_POLICY", "DEFAULT_PRICE_BAND", "GuardPolicy", "check_report", "expected_side"]

DEFAULT_PRICE_BAND = Decimal("0.05")
"""Default band: a fill more than 5 % outside the quote's bid/ask is refused."""

_OWN_SIDE = frozenset(
    {
        RequestKind.OPEN,
        RequestKind.PLACE_PENDING,
        RequestKind.MODIFY_PENDING,
        RequestKind.CANCEL_PENDING,
    }
)


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """What the guard tolerates; built from settings by the worker shell.

    ``price_band`` is a fraction of the quote (0.05 = 5 %); 0 turns the band check off.
    """

    price_band: Decimal = DEFAULT_PRICE_BAND


DEFAULT_POLICY = GuardPolicy()
"""The guard with its default band."""


def expected_side(order: Order, kind: RequestKind) -> Side:
    """The side an LP report answering a ``kind`` request for ``order`` must carry."""
    return order.side if kind in _OWN_SIDE else order.side.opposite


def check_report(
    order: Order,
    report: ExecutionReport,
    kind: RequestKind,
    prices: Prices,
    policy: GuardPolicy = DEFAULT_POLICY,
) -> Mismatch | None:
    """The first contradiction between ``report`` and ``order``, or None when it fits."""
    identity = _identity(order, report, kind)
    if identity:
        return Mismatch(REPORT_MISMATCH, identity)
    if not report.ord_status.is_fill:
        return None  # quantities and prices of a non-fill move nothing
    quantities = _quantities(order, report)
    if quantities:
        return Mismatch(OVERFILL, quantities)
    if policy.price_band > 0:
        band = _price_band(order, report, prices, policy.price_band)
        if band:
            return Mismatch(PRICE_OUT_OF_BAND, band)
    return None


def _identity(order: Order, report: ExecutionReport, kind: RequestKind) -> dict[str, str]:
    found: dict[str, str] = {}
    if report.symbol is not None and report.symbol.upper() != order.symbol.upper():
        found["symbol"] = _said(report.symbol, order.symbol)
    side = expected_side(order, kind)
    if report.side is not None and report.side is not side:
        found["side"] = _said(report.side.value, side.value)
    return found


def _quantities(order: Order, report: ExecutionReport) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, qty in (("cum_qty", report.cum_qty), ("last_qty", report.last_qty)):
        if qty is not None and qty > order.qty:
            found[name] = _said(str(qty), f"<= {order.qty}")
    return found


def _price_band(
    order: Order, report: ExecutionReport, prices: Prices, band: Decimal
) -> dict[str, str]:
    quote = prices.get(order.symbol)
    if quote is None:
        return {}
    low = quote.bid * (1 - band)
    high = quote.ask * (1 + band)
    found: dict[str, str] = {}
    for name, px in (("avg_px", report.avg_px), ("last_px", report.last_px)):
        if px is not None and px > 0 and not low <= px <= high:
            found[name] = _said(str(px), f"{_plain(low)}..{_plain(high)}")
    return found


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _said(reported: str, expected: str) -> str:
    return f"report={reported} expected={expected}"
