"""Reference data of a simulated run: accounts (live and demo, three groups), instruments, quotes.

Built in code so the installed package needs no file; the trading conditions follow
``examples/seed.toml`` (standard: wide spreads; pro: raw spreads plus commission; vip:
tight spreads, commission on entry only).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal

from execflow.domain.enums import CommissionType, CommissionValueType, InstrumentType
from execflow.domain.models import Account, InstrumentConfig
from execflow.pipeline.seed import Seed
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed, SymbolSpec

__all__ = ["GROUPS", "demo_seed"]

GROUPS = ("standard", "pro", "vip")

_D = Decimal
# symbol -> (contract size, profit currency, type, spread_pip, min/step lots, max lots)
_SYMBOLS: dict[str, tuple[Decimal, str, InstrumentType, Decimal, Decimal, Decimal]] = {
    "EURUSD": (_D(100000), "USD", InstrumentType.FOREX, _D("0.00001"), _D("0.01"), _D(50)),
    "GBPUSD": (_D(100000), "USD", InstrumentType.FOREX, _D("0.00001"), _D("0.01"), _D(50)),
    "USDJPY": (_D(100000), "JPY", InstrumentType.FOREX, _D("0.001"), _D("0.01"), _D(50)),
    "EURGBP": (_D(100000), "GBP", InstrumentType.FOREX, _D("0.00001"), _D("0.01"), _D(50)),
    "XAUUSD": (_D(100), "USD", InstrumentType.METAL, _D("0.01"), _D("0.01"), _D(20)),
    "US30": (_D(1), "USD", InstrumentType.INDEX, _D("0.1"), _D("0.1"), _D(100)),
    "BTCUSD": (_D(1), "USD", InstrumentType.CRYPTO, _D("1"), _D("0.01"), _D(10)),
}
_PER_LOT = CommissionValueType.PER_LOT
_PERCENT = CommissionValueType.PERCENT
# group -> symbol -> (spread points, commission rate, commission type, value type)
_CONDITIONS: dict[str, dict[str, tuple[int, Decimal, CommissionType, CommissionValueType]]] = {
    "standard": {
        "EURUSD": (12, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "GBPUSD": (15, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "USDJPY": (14, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "EURGBP": (16, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "XAUUSD": (35, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "US30": (30, _D(0), CommissionType.EVERY_TRADE, _PER_LOT),
        "BTCUSD": (40, _D("0.05"), CommissionType.EXIT, _PERCENT),
    },
    "pro": {
        "EURUSD": (2, _D("3.5"), CommissionType.EVERY_TRADE, _PER_LOT),
        "GBPUSD": (3, _D("3.5"), CommissionType.EVERY_TRADE, _PER_LOT),
        "USDJPY": (3, _D("3.5"), CommissionType.EVERY_TRADE, _PER_LOT),
        "EURGBP": (4, _D("0.002"), CommissionType.ENTRY, _PERCENT),
        "XAUUSD": (15, _D(7), CommissionType.EVERY_TRADE, _PER_LOT),
        "US30": (10, _D("0.001"), CommissionType.ENTRY, _PERCENT),
        "BTCUSD": (20, _D("0.025"), CommissionType.EVERY_TRADE, _PERCENT),
    },
    "vip": {
        "EURUSD": (1, _D(5), CommissionType.ENTRY, _PER_LOT),
        "GBPUSD": (2, _D(5), CommissionType.ENTRY, _PER_LOT),
        "USDJPY": (2, _D(5), CommissionType.ENTRY, _PER_LOT),
        "EURGBP": (2, _D(5), CommissionType.ENTRY, _PER_LOT),
        "XAUUSD": (10, _D(10), CommissionType.ENTRY, _PER_LOT),
        "US30": (5, _D("0.002"), CommissionType.EXIT, _PERCENT),
        "BTCUSD": (10, _D("0.02"), CommissionType.ENTRY, _PERCENT),
    },
}
_BALANCES = (_D("10000.00"), _D("25000.00"), _D("50000.00"), _D("100000.00"))
_LEVERAGES = (_D(50), _D(100), _D(200), _D(500))


def _instrument(group: str, symbol: str) -> InstrumentConfig:
    size, currency, kind, pip, step, max_lots = _SYMBOLS[symbol]
    spread, rate, ctype, vtype = _CONDITIONS[group][symbol]
    return InstrumentConfig(
        group=group,
        symbol=symbol,
        contract_size=size,
        profit_currency=currency,
        instrument_type=kind,
        spread=_D(spread),
        spread_pip=pip,
        commission_rate=rate,
        commission_type=ctype,
        commission_value_type=vtype,
        crypto_margin_factor=_D(5) if kind is InstrumentType.CRYPTO else _D(1),
        min_lots=step,
        max_lots=max_lots,
        lot_step=step,
    )


def demo_seed(
    accounts: int, rng: random.Random, feed: PriceFeed, symbols: Sequence[SymbolSpec] = ()
) -> Seed:
    """``accounts`` accounts (every third one demo), spread over the groups, current quotes."""
    chosen = [s.symbol for s in (symbols or DEFAULT_SYMBOLS) if s.symbol in _SYMBOLS]
    made = []
    for number in range(1, accounts + 1):
        user_type = "demo" if number % 3 == 0 else "live"
        made.append(
            Account(
                account_id=f"{user_type}:{number}",
                currency="USD",
                balance=rng.choice(_BALANCES),
                leverage=rng.choice(_LEVERAGES),
                group=GROUPS[number % len(GROUPS)],
            )
        )
    instruments = tuple(_instrument(g, s) for g in GROUPS for s in chosen)
    return Seed(tuple(made), instruments, tuple(feed.quotes()))
