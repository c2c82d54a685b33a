"""Money primitives: rounding, conversion sides, missing rates, hedged margin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain import money
from execflow.domain.enums import Side
from execflow.domain.models import Position, Prices, Quote

D = Decimal
PRICES = Prices.of(Quote("GBPUSD", D("1.2700"), D("1.2710")), Quote("USDJPY", D(150), D("150.2")))


def test_book_rounds_half_up_to_cents() -> None:
    assert money.book(D("542.505")) == D("542.51")
    assert money.book(D("-542.505")) == D("-542.51")
    assert money.book(D("0.004")) == D("0.00")


@pytest.mark.parametrize(
    ("currency", "direction", "expected"),
    [
        ("GBP", money.Direction.OWED, D("127.10")),
        ("GBP", money.Direction.EARNED, D("127.00")),
        ("JPY", money.Direction.OWED, D("100") * 100 / D(150)),
        ("JPY", money.Direction.EARNED, D("100") * 100 / D("150.2")),
        ("USD", money.Direction.OWED, D(100)),
    ],
)
def test_conversion_takes_the_conservative_side(
    currency: str, direction: money.Direction, expected: Decimal
) -> None:
    amount = D(100) if currency != "JPY" else D(10000)
    assert money.to_usd(amount, currency, PRICES, direction).usd == expected


def test_missing_rate_is_an_exception_never_one() -> None:
    with pytest.raises(money.MissingRate) as err:
        money.to_usd(D(1), "CHF", PRICES, money.Direction.OWED)
    assert err.value.currency == "CHF"


@settings(max_examples=150, deadline=None)
@given(st.decimals(min_value=D("-1e6"), max_value=D("1e6"), places=4))
def test_owed_is_never_cheaper_than_earned(amount: Decimal) -> None:
    for ccy in ("GBP", "JPY"):
        owed = money.to_usd(amount, ccy, PRICES, money.Direction.OWED).usd
        earned = money.to_usd(amount, ccy, PRICES, money.Direction.EARNED).usd
        assert abs(owed) >= abs(earned)


def test_prices_shift_by_half_spread_and_invert() -> None:
    hs = D("0.00001")
    assert money.open_price(Side.BUY, D("1.085"), hs) == D("1.08501")
    assert money.close_price(Side.BUY, D("1.085"), hs) == D("1.08499")
    for side in Side:
        assert money.client_price(side, money.lp_price(side, D("1.1"), hs), hs) == D("1.1")


def test_hedged_symbol_margin() -> None:
    positions = [
        Position("a", "EURUSD", Side.BUY, D(1), D(1000)),
        Position("b", "EURUSD", Side.SELL, D("1.5"), D(1100)),
        Position("c", "USDJPY", Side.BUY, D("0.5"), D("1000.005")),
    ]
    assert money.hedged_symbol_margin(positions[:2]) == D("1650.00")
    assert money.used_margin_executed(positions) == D("1650.00") + D("500.00")
    assert money.used_margin_executed([]) == 0
