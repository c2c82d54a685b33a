"""A quote older than ``quote_max_age_s`` is stale: intake checks on it are refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from execflow.domain.enums import LegKind, OrderStatus, OrderType, Side
from execflow.domain.intake import (
    Accepted,
    NewOrder,
    Refused,
    modify_pending,
    set_protection,
    submit_order,
)
from execflow.domain.models import Prices, Quote
from tests.domain.factories import EURGBP, EURUSD, NOW, PRICES, account, market_order

D = Decimal
MAX_AGE_S = 5.0


def timed(age_s: dict[str, float]) -> Prices:
    """The factory prices, each quote received ``age_s[symbol]`` seconds before NOW."""
    quotes = [
        replace(q, time=NOW - timedelta(seconds=age_s.get(s, 0.5)))
        for s, q in PRICES.quotes.items()
    ]
    return Prices.of(*quotes).fresh_at(NOW, MAX_AGE_S)


def new(symbol: str = "EURUSD", **changes: object) -> NewOrder:
    base = NewOrder("live:6", symbol, Side.BUY, OrderType.MARKET, D("0.5"))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_fresh_quote_is_used_and_a_stale_one_refused() -> None:
    fresh = submit_order(new(), account(), EURUSD, timed({}), "o1", "L1", NOW)
    assert isinstance(fresh, Accepted)
    stale = submit_order(new(), account(), EURUSD, timed({"EURUSD": 5.5}), "o1", "L1", NOW)
    assert stale == Refused("stale_price", "EURUSD")


def test_a_stale_conversion_rate_refuses_the_margin_check() -> None:
    # EURGBP margin is in GBP: converting it needs GBPUSD, which is stale here
    prices = timed({"GBPUSD": 60.0})
    refused = submit_order(new("EURGBP"), account(), EURGBP, prices, "o1", "L1", NOW)
    assert refused == Refused("stale_price", "GBP")
    gone = Prices({s: q for s, q in PRICES.quotes.items() if s != "GBPUSD"})
    missing = submit_order(new("EURGBP"), account(), EURGBP, gone, "o1", "L1", NOW)
    assert missing == Refused("missing_conversion_rate", "GBP")


def test_modify_and_protection_refuse_on_a_stale_quote() -> None:
    prices = timed({"EURUSD": 30.0})
    pending = market_order(
        order_type=OrderType.BUY_LIMIT, status=OrderStatus.PENDING, requested_price=D("1.08")
    )
    assert modify_pending(pending, account(), EURUSD, prices, D("1.07"), "L2", NOW) == Refused(
        "stale_price", "EURUSD"
    )
    opened = market_order(status=OrderStatus.OPEN)
    refused = set_protection(opened, account(), EURUSD, prices, LegKind.SL, D("1.07"), "L3", NOW)
    assert refused == Refused("stale_price", "EURUSD")


def test_age_zero_turns_the_check_off_and_untimed_quotes_are_never_stale() -> None:
    old = Prices.of(Quote("EURUSD", D(1), D("1.0001"), NOW - timedelta(days=1)))
    assert old.fresh_at(NOW, 0) is old
    untimed = Prices.of(Quote("EURUSD", D(1), D("1.0001")))
    assert untimed.fresh_at(NOW, 1.0).get("EURUSD") is not None
    assert old.fresh_at(NOW, 1.0).stale == frozenset({"EURUSD"})
