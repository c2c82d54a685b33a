"""Money arithmetic (DESIGN §5): spreads, margin, commission, profit, conversion, rounding.

Everything is exact ``Decimal``. Amounts are rounded once, by ``book``, where they are
booked (margin, commission, profit, net profit, balance); intermediate values keep full
precision. A missing conversion rate raises ``MissingRate``; nothing is ever assumed to
be USD already.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from execflow.domain.enums import (
    CommissionType,
    CommissionValueType,
    InstrumentType,
    Side,
)
from execflow.domain.models import (
    ZERO,
    CommissionSnapshot,
    InstrumentConfig,
    Position,
    Prices,
    Quote,
)
from execflow.errors import ExecflowError

__all__ = [
    "CENT",
    "USD",
    "Conversion",
    "Direction",
    "MissingRate",
    "book",
    "charges_entry",
    "charges_exit",
    "client_price",
    "close_price",
    "commission",
    "hedged_margin",
    "hedged_symbol_margin",
    "lp_price",
    "margin_per_lot",
    "net_profit",
    "open_price",
    "profit",
    "to_usd",
    "used_margin_executed",
]

CENT = Decimal("0.01")
USD = "USD"


class MissingRate(ExecflowError):
    """No quote converts ``currency`` to USD; the transition must wait for one."""

    def __init__(self, currency: str) -> None:
        super().__init__("missing conversion rate", currency=currency)
        self.currency = currency


class Direction(StrEnum):
    """Whose favour the conversion must not be in: the client's."""

    OWED = "OWED"  # the client pays: take the side larger in USD
    EARNED = "EARNED"  # the client receives: take the side smaller in USD

    @classmethod
    def of_amount(cls, amount: Decimal) -> Direction:
        """Profits are earned, losses owed."""
        return cls.EARNED if amount >= 0 else cls.OWED


def book(amount: Decimal) -> Decimal:
    """The single rounding policy: cents, half-up (applied only when booking)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def client_price(exec_side: Side, lp_px: Decimal, half_spread: Decimal) -> Decimal:
    """Client price of an execution on ``exec_side`` at LP price ``lp_px``.

    The client buys above and sells below the LP price by the half spread.
    """
    return lp_px + half_spread if exec_side is Side.BUY else lp_px - half_spread


def lp_price(exec_side: Side, client_px: Decimal, half_spread: Decimal) -> Decimal:
    """Inverse of ``client_price``: the LP level that gives the client ``client_px``."""
    return client_px - half_spread if exec_side is Side.BUY else client_px + half_spread


def open_price(side: Side, avg_px: Decimal, half_spread: Decimal) -> Decimal:
    """Open price: avg_px + hs for BUY, avg_px - hs for SELL."""
    return client_price(side, avg_px, half_spread)


def close_price(side: Side, avg_px: Decimal, half_spread: Decimal) -> Decimal:
    """Close price of a ``side`` position: avg_px - hs for BUY, avg_px + hs for SELL."""
    return client_price(side.opposite, avg_px, half_spread)


@dataclass(frozen=True, slots=True)
class Conversion:
    """An amount converted to USD (unrounded) and how."""

    usd: Decimal
    rate: Decimal
    pair: str
    operation: str  # "none" | "multiply" | "divide"


def to_usd(amount: Decimal, currency: str, prices: Prices, direction: Direction) -> Conversion:
    """Convert to USD at the conservative side of the quote.

    Direct pairs (XUSD) multiply, inverse pairs (USDX) divide; a cross instrument's
    profit currency goes through its own USD leg. Raises ``MissingRate`` when neither
    pair is quoted.
    """
    if currency == USD:
        return Conversion(amount, Decimal(1), USD, "none")
    direct = prices.get(currency + USD)
    if direct is not None:
        candidates = [Conversion(amount * r, r, direct.symbol, "multiply") for r in _sides(direct)]
    else:
        inverse = prices.get(USD + currency)
        if inverse is None:
            raise MissingRate(currency)
        candidates = [Conversion(amount / r, r, inverse.symbol, "divide") for r in _sides(inverse)]
    pick = max if direction is Direction.OWED else min
    return pick(candidates, key=lambda c: abs(c.usd))


def _sides(quote: Quote) -> tuple[Decimal, Decimal]:
    if quote.bid <= 0 or quote.ask <= 0:
        # a zero or negative quote is no rate at all
        raise MissingRate(quote.symbol)
    return quote.bid, quote.ask


def margin_per_lot(instrument: InstrumentConfig, price: Decimal, leverage: Decimal) -> Decimal:
    """Margin of one lot in the profit currency: contract * price / leverage (* crypto factor)."""
    value = instrument.contract_size * price / leverage
    if instrument.instrument_type is InstrumentType.CRYPTO:
        value *= instrument.crypto_margin_factor
    return value


def hedged_symbol_margin(positions: Iterable[Position]) -> Decimal:
    """Booked margin of one symbol: max per-lot margin * max(total BUY, total SELL lots)."""
    items = list(positions)
    if not items:
        return ZERO
    buy = sum((p.lots for p in items if p.side is Side.BUY), ZERO)
    sell = sum((p.lots for p in items if p.side is Side.SELL), ZERO)
    return hedged_margin(max(p.margin_per_lot_usd for p in items), buy, sell)


def hedged_margin(top_per_lot: Decimal, buy: Decimal, sell: Decimal) -> Decimal:
    """The hedged formula on a symbol's aggregates: largest per-lot margin * max(BUY, SELL
    lots), booked (``hedged_symbol_margin`` and ``domain.positionbook`` both use it)."""
    return book(top_per_lot * max(buy, sell))


def used_margin_executed(positions: Iterable[Position]) -> Decimal:
    """Sum over symbols of the hedged symbol margin."""
    by_symbol: dict[str, list[Position]] = {}
    for p in positions:
        by_symbol.setdefault(p.symbol, []).append(p)
    return sum((hedged_symbol_margin(ps) for ps in by_symbol.values()), ZERO)


def charges_entry(commission_type: CommissionType) -> bool:
    """Entry commission is charged for EVERY_TRADE and ENTRY."""
    return commission_type in (CommissionType.EVERY_TRADE, CommissionType.ENTRY)


def charges_exit(commission_type: CommissionType) -> bool:
    """Exit commission is charged for EVERY_TRADE and EXIT."""
    return commission_type in (CommissionType.EVERY_TRADE, CommissionType.EXIT)


def commission(
    snapshot: CommissionSnapshot,
    lots: Decimal,
    price: Decimal,
    profit_currency: str,
) -> tuple[Decimal, str]:
    """One side's commission and its currency (before conversion and booking).

    Per lot: lots * rate, in USD. Percent: rate / 100 * contract * lots * price, in the
    profit currency.
    """
    if snapshot.value_type is CommissionValueType.PER_LOT:
        return lots * snapshot.rate, USD
    return snapshot.rate / 100 * snapshot.contract_size * lots * price, profit_currency


def profit(
    side: Side, open_px: Decimal, close_px: Decimal, lots: Decimal, contract: Decimal
) -> Decimal:
    """Profit in the profit currency: (close - open) for BUY, (open - close) for SELL."""
    move = close_px - open_px if side is Side.BUY else open_px - close_px
    return move * lots * contract


def net_profit(
    profit_usd: Decimal, entry_commission: Decimal, exit_commission: Decimal, swap: Decimal
) -> Decimal:
    """Net profit = profit - entry commission - exit commission + swap (all booked)."""
    return profit_usd - entry_commission - exit_commission + swap
