"""Worked examples with exact Decimals: EURUSD (the issue's), USDJPY, EURGBP, BTCUSD."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execflow.domain.effects import CalculationName, DbEvent, EventKind
from execflow.domain.enums import CloseReason, OrderStatus, OrderType, Side
from execflow.domain.intake import NewOrder, request_close, submit_order
from execflow.domain.models import Prices, Quote
from execflow.domain.outcomes import MISSING_CONVERSION_RATE, Applied, TooEarly
from tests.domain.factories import NOW, PRICES, account
from tests.domain.harness import Book, fill

D = Decimal


def _round_trip(
    symbol: str, side: Side, lots: str, open_px: str, close_px: str
) -> tuple[Book, Applied, Applied]:
    book = Book({"live:6": account()})
    book.take(
        submit_order(
            NewOrder("live:6", symbol, side, OrderType.MARKET, D(lots)),
            book.accounts["live:6"],
            book.instruments[symbol],
            book.prices,
            "o1",
            "o1-open",
            NOW,
        )
    )
    opened = book.deliver(fill("o1-open", "e1", lots, open_px))
    assert isinstance(opened, Applied)
    book.take(request_close(book.orders["o1"], book.accounts["live:6"], "o1-close", NOW))
    closed = book.deliver(fill("o1-close", "e2", lots, close_px))
    assert isinstance(closed, Applied)
    return book, opened, closed


def test_eurusd_buy_the_issue_example() -> None:
    _, opened, closed = _round_trip("EURUSD", Side.BUY, "0.5", "1.08500", "1.08750")
    order = opened.order
    assert order.open_price == D("1.08501")
    assert order.margin == D("542.51")  # 100000 * 0.5 * 1.08501 / 100 = 542.505 -> 542.51
    assert order.entry_commission == D("1.75")  # 3.5 per lot, 0.5 lots
    assert opened.account.used_margin_executed == D("542.51")
    assert opened.account.used_margin_all == D("542.51")  # the reservation was released
    calc = opened.calculations[0]
    assert calc.name is CalculationName.ORDER_OPEN_CALC
    assert (calc.outputs["open_price"], calc.outputs["margin_usd"]) == ("1.08501", "542.51")

    done = closed.order
    assert done.status is OrderStatus.CLOSED
    assert done.close_price == D("1.08749")
    assert done.profit == D("124.00")
    assert done.exit_commission == D("1.75")
    assert done.net_profit == D("120.50")
    assert done.close_reason is CloseReason.CLOSE
    assert closed.account.balance == D("10120.50")
    assert closed.account.used_margin_executed == 0
    assert closed.account.used_margin_all == 0
    assert closed.calculations[0].outputs["net_profit"] == "120.50"
    event = closed.effects[0]
    assert isinstance(event, DbEvent)
    assert event.event_id == "o1:e2:ORDER_CLOSED"
    assert event.payload["deltas"] == {
        "balance": "120.50",
        "used_margin_executed": "-542.51",
        "used_margin_all": "-542.51",
    }


def test_usdjpy_profit_converts_through_the_inverse_pair() -> None:
    _, opened, closed = _round_trip("USDJPY", Side.BUY, "1", "150.000", "150.500")
    assert opened.order.open_price == D("150.001")
    # 150001 JPY owed -> divided by the bid (the larger USD amount)
    assert opened.order.margin == D("1000.01")
    assert closed.order.close_price == D("150.499")
    # 49800 JPY earned -> divided by the ask (the smaller USD amount): 331.9955...
    assert closed.order.profit == D("332.00")
    assert closed.order.net_profit == D("325.00")
    assert closed.account.balance == D("10325.00")


def test_eurgbp_cross_sell_with_percent_entry_commission() -> None:
    _, opened, closed = _round_trip("EURGBP", Side.SELL, "1", "0.85000", "0.84800")
    assert opened.order.open_price == D("0.84999")
    assert opened.order.margin == D("1079.57")  # 849.99 GBP * 1.27010 (ask: owed)
    assert opened.order.entry_commission == D("2.16")  # 1.69998 GBP * 1.27010
    assert closed.order.close_price == D("0.84801")
    assert closed.order.profit == D("251.46")  # 198.00 GBP * 1.27000 (bid: earned)
    assert closed.order.exit_commission == 0  # ENTRY only
    assert closed.order.net_profit == D("249.30")


def test_btcusd_crypto_margin_factor_and_exit_commission() -> None:
    _, opened, closed = _round_trip("BTCUSD", Side.BUY, "0.1", "60000.0", "61000.0")
    assert opened.order.open_price == D("60005.0")
    assert opened.order.margin == D("300.03")  # 60005 / 100 * 5 * 0.1 = 300.025
    assert opened.order.entry_commission == 0  # EXIT only
    assert closed.order.close_price == D("60995.0")
    assert closed.order.profit == D("99.00")
    assert closed.order.exit_commission == D("3.05")  # 0.05% of 6099.5
    assert closed.order.net_profit == D("95.95")


def test_losing_trade_converts_at_the_side_larger_in_usd() -> None:
    _, _, closed = _round_trip("EURGBP", Side.BUY, "1", "0.85000", "0.84000")
    # -1002.00 GBP owed -> * 1.27010 (ask) = -1272.64
    assert closed.order.profit == D("-1272.64")


def test_missing_conversion_rate_is_too_early_then_applies() -> None:
    book = Book({"live:6": account()})
    book.take(
        submit_order(
            NewOrder("live:6", "EURGBP", Side.BUY, OrderType.MARKET, D(1)),
            book.accounts["live:6"],
            book.instruments["EURGBP"],
            book.prices,
            "o1",
            "o1-open",
            NOW,
        )
    )
    book.prices = Prices.of(Quote("EURGBP", D("0.85"), D("0.85002")))
    assert book.deliver(fill("o1-open", "e1", "1", "0.85000")) == TooEarly(MISSING_CONVERSION_RATE)
    assert book.orders["o1"].status is OrderStatus.QUEUED
    book.prices = PRICES
    outcome = book.deliver(fill("o1-open", "e1", "1", "0.85000"))
    assert isinstance(outcome, Applied)
    assert outcome.effects[0].kind is EventKind.ORDER_OPENED


@pytest.mark.parametrize(
    ("sides", "expected"),
    [
        (((Side.BUY, "1"), (Side.SELL, "0.5")), "1085.01"),
        (((Side.BUY, "1"), (Side.SELL, "1")), "1085.01"),
        (((Side.BUY, "0.5"), (Side.BUY, "0.5"), (Side.SELL, "2")), "2170.02"),
    ],
)
def test_hedged_margin_per_symbol(sides: tuple[tuple[Side, str], ...], expected: str) -> None:
    book = Book({"live:6": account(balance=D(100000))})
    for n, (side, lots) in enumerate(sides):
        oid = f"o{n}"
        book.take(
            submit_order(
                NewOrder("live:6", "EURUSD", side, OrderType.MARKET, D(lots)),
                book.accounts["live:6"],
                book.instruments["EURUSD"],
                book.prices,
                oid,
                f"{oid}-open",
                NOW,
            )
        )
        px = "1.08500" if side is Side.BUY else "1.08502"
        assert isinstance(book.deliver(fill(f"{oid}-open", f"e{n}", lots, px)), Applied)
    # BUY opens at 1.08501, SELL at 1.08501 too: 1085.01 per lot either way
    assert book.accounts["live:6"].used_margin_executed == D(expected)
