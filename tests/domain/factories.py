"""Reference data for domain tests: instruments, accounts, prices, orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from execflow.domain.enums import (
    CommissionType,
    CommissionValueType,
    InstrumentType,
    OrderStatus,
    OrderType,
    Side,
)
from execflow.domain.models import Account, InstrumentConfig, Order, Prices, Quote

D = Decimal
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
GROUP = "standard"

EURUSD = InstrumentConfig(
    group=GROUP,
    symbol="EURUSD",
    contract_size=D(100000),
    profit_currency="USD",
    instrument_type=InstrumentType.FOREX,
    spread=D(2),
    spread_pip=D("0.00001"),
    commission_rate=D("3.5"),
    commission_type=CommissionType.EVERY_TRADE,
    commission_value_type=CommissionValueType.PER_LOT,
)
USDJPY = InstrumentConfig(
    group=GROUP,
    symbol="USDJPY",
    contract_size=D(100000),
    profit_currency="JPY",
    instrument_type=InstrumentType.FOREX,
    spread=D(2),
    spread_pip=D("0.001"),
    commission_rate=D("3.5"),
)
EURGBP = InstrumentConfig(
    group=GROUP,
    symbol="EURGBP",
    contract_size=D(100000),
    profit_currency="GBP",
    instrument_type=InstrumentType.FOREX,
    spread=D(2),
    spread_pip=D("0.00001"),
    commission_rate=D("0.002"),
    commission_type=CommissionType.ENTRY,
    commission_value_type=CommissionValueType.PERCENT,
)
BTCUSD = InstrumentConfig(
    group=GROUP,
    symbol="BTCUSD",
    contract_size=D(1),
    profit_currency="USD",
    instrument_type=InstrumentType.CRYPTO,
    spread=D(20),
    spread_pip=D("0.5"),
    commission_rate=D("0.05"),
    commission_type=CommissionType.EXIT,
    commission_value_type=CommissionValueType.PERCENT,
    crypto_margin_factor=D(5),
)
INSTRUMENTS = {i.symbol: i for i in (EURUSD, USDJPY, EURGBP, BTCUSD)}

PRICES = Prices.of(
    Quote("EURUSD", D("1.08500"), D("1.08502")),
    Quote("USDJPY", D("150.000"), D("150.002")),
    Quote("EURGBP", D("0.85000"), D("0.85002")),
    Quote("GBPUSD", D("1.27000"), D("1.27010")),
    Quote("BTCUSD", D("60000.0"), D("60010.0")),
)


def account(**changes: Any) -> Account:
    """A USD account with 10 000 balance and leverage 100."""
    base = Account(
        account_id="live:6",
        currency="USD",
        balance=D(10000),
        leverage=D(100),
        group=GROUP,
    )
    return replace(base, **changes)


def market_order(**changes: Any) -> Order:
    """A queued EURUSD BUY 0.5 market order."""
    base = Order(
        order_id="o1",
        account_id="live:6",
        group=GROUP,
        symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        qty=D("0.5"),
        status=OrderStatus.QUEUED,
        lifecycle_id="o1-open",
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **changes)
