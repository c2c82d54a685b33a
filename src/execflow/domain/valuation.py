"""Floating profit and equity at live quotes (what the account view shows; nothing booked).

A position is valued at the price it would close at now: the client's bid for a BUY
(LP bid - half spread), the client's ask for a SELL (LP ask + half spread), converted to
USD at the conservative side of the quote, like a real close (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from execflow.domain import money
from execflow.domain.enums import Side
from execflow.domain.models import Account, InstrumentConfig, Order, Prices

__all__ = ["AccountValue", "PositionValue", "account_value", "position_value"]

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class PositionValue:
    """One open position at market; ``profit`` is None when it cannot be valued now."""

    order: Order
    market_price: Decimal | None
    profit: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountValue:
    """Balance, margin, equity and margin level; ``complete`` is False when a position
    lacked a quote or a conversion rate (its profit is then left out of the equity)."""

    balance: Decimal
    used_margin: Decimal
    reserved_margin: Decimal
    free_margin: Decimal
    floating_profit: Decimal
    equity: Decimal
    margin_level_pct: Decimal | None
    positions: tuple[PositionValue, ...]
    complete: bool


def position_value(
    order: Order, instrument: InstrumentConfig | None, prices: Prices
) -> PositionValue:
    """The floating profit (USD, booked to cents) of an open position at ``prices``."""
    quote = prices.get(order.symbol)
    if instrument is None or quote is None or order.open_price is None:
        return PositionValue(order, None, None)
    lp_side = quote.bid if order.side is Side.BUY else quote.ask
    market = money.close_price(order.side, lp_side, instrument.half_spread)
    lots = order.cum_qty or order.qty
    gross = money.profit(order.side, order.open_price, market, lots, instrument.contract_size)
    try:
        usd = money.to_usd(
            gross, instrument.profit_currency, prices, money.Direction.of_amount(gross)
        ).usd
    except money.MissingRate:
        return PositionValue(order, market, None)
    return PositionValue(order, market, money.book(usd))


def account_value(account: Account, positions: tuple[PositionValue, ...]) -> AccountValue:
    """Equity = balance + floating profit; margin level = equity / used margin x 100."""
    floating = sum((p.profit for p in positions if p.profit is not None), ZERO)
    equity = account.balance + floating
    used = account.used_margin_executed
    level = (equity / used * HUNDRED).quantize(Decimal("0.01")) if used > 0 else None
    return AccountValue(
        balance=account.balance,
        used_margin=used,
        reserved_margin=account.used_margin_all - account.used_margin_executed,
        free_margin=account.free_margin,  # DESIGN §2: what the intake checks
        floating_profit=floating,
        equity=equity,
        margin_level_pct=level,
        positions=positions,
        complete=all(p.profit is not None for p in positions),
    )
