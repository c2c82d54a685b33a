"""Properties: idempotency, order-independence, and money returning to exactly zero."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.enums import LegState, OrderStatus, OrderType, ReportStatus, Side
from execflow.domain.intake import NewOrder, request_close, submit_order
from execflow.domain.messages import ExecutionReport
from execflow.domain.models import Order
from execflow.domain.outcomes import Applied, Duplicate, Stale, TooEarly
from execflow.domain.routing import DeadLetterDecision, DlqReason
from tests.domain.factories import NOW, account
from tests.domain.harness import Book, fill, report

D = Decimal
PROPS = settings(max_examples=150, deadline=None)


def _business(order: Order) -> Order:
    """The order without bookkeeping that legitimately depends on delivery order."""
    return replace(order, version=0, applied_exec_ids=(), outbox=(), updated_at=NOW)


def _protected_book() -> Book:
    book = Book({"live:6": account()})
    book.take(
        submit_order(
            NewOrder(
                "live:6",
                "EURUSD",
                Side.BUY,
                OrderType.MARKET,
                D("0.5"),
                sl=D("1.08000"),
                tp=D("1.09000"),
            ),
            book.accounts["live:6"],
            book.instruments["EURUSD"],
            book.prices,
            "o1",
            "o1-open",
            NOW,
        )
    )
    return book


# the natural sequence: two partial fills, the final fill, both leg acks, a duplicate,
# the TP fill, and the confirmation of the SL cancel the TP fill caused
SCENARIO: tuple[ExecutionReport, ...] = (
    fill("o1-open", "e1", "0.2", "1.08500", ReportStatus.PARTIALLY_FILLED),
    fill("o1-open", "e2", "0.4", "1.08500", ReportStatus.PARTIALLY_FILLED),
    fill("o1-open", "e3", "0.5", "1.08500"),
    report("o1-sl-1", "e4", ReportStatus.PENDING, "1.08001"),
    report("o1-tp-1", "e5", ReportStatus.PENDING, "1.09001"),
    report("o1-tp-1", "e5", ReportStatus.PENDING, "1.09001"),
    fill("o1-tp-1", "e6", "0.5", "1.09001"),
    report("o1-sl-1-cancel", "e7", ReportStatus.CANCELLED),
)


def _play(book: Book, reports: list[ExecutionReport]) -> None:
    """Deliver in this order; park what is too early (or not yet known) and retry."""
    parked = list(reports)
    while parked:
        progress = False
        retry: list[ExecutionReport] = []
        for item in parked:
            outcome = book.deliver(item)
            if isinstance(outcome, TooEarly) or outcome == DeadLetterDecision(
                DlqReason.UNKNOWN_LIFECYCLE_ID, item.lifecycle_id or ""
            ):
                retry.append(item)
            else:
                assert isinstance(outcome, Applied | Duplicate | Stale), outcome
                progress = True
        assert progress or not retry, f"stuck on {retry}"
        parked = retry


def test_natural_order_ends_closed_by_take_profit() -> None:
    book = _protected_book()
    _play(book, list(SCENARIO))
    order = book.orders["o1"]
    assert order.status is OrderStatus.CLOSED
    assert order.tp.state is LegState.TRIGGERED
    assert order.sl.state is LegState.CANCELLED
    assert order.close_price == D("1.09000")  # the TP level the client asked for
    assert order.net_profit == D("246.00")  # (1.09000 - 1.08501) * 50000 - 3.50
    assert book.accounts["live:6"].used_margin_all == 0


@PROPS
@given(st.permutations(SCENARIO))
def test_any_delivery_order_ends_in_the_same_state(reports: list[ExecutionReport]) -> None:
    natural = _protected_book()
    _play(natural, list(SCENARIO))
    shuffled = _protected_book()
    _play(shuffled, reports)
    assert _business(shuffled.orders["o1"]) == _business(natural.orders["o1"])
    assert replace(shuffled.accounts["live:6"], version=0) == replace(
        natural.accounts["live:6"], version=0
    )


@PROPS
@given(st.integers(0, len(SCENARIO) - 1))
def test_applying_a_report_twice_equals_once(stop: int) -> None:
    book = _protected_book()
    _play(book, list(SCENARIO[:stop]))
    item = SCENARIO[stop]
    first = book.deliver(item)
    order, acct = book.orders["o1"], book.accounts["live:6"]
    second = book.deliver(item)
    assert (book.orders["o1"], book.accounts["live:6"]) == (order, acct)
    if isinstance(first, Applied):
        assert second == Duplicate(first.effects)


_positions = st.lists(
    st.tuples(
        st.sampled_from(["EURUSD", "USDJPY", "EURGBP", "BTCUSD"]),
        st.sampled_from(Side),
        st.integers(1, 50).map(lambda n: D(n) / 100),
        st.integers(-300, 300),
    ),
    min_size=1,
    max_size=6,
)


@PROPS
@given(_positions, st.randoms(use_true_random=False))
def test_closing_everything_returns_margins_to_zero(positions: list, rnd: object) -> None:  # type: ignore[type-arg]
    book = Book({"live:6": account(balance=D(1000000))})
    base = {"EURUSD": D("1.08500"), "USDJPY": D("150.000"), "EURGBP": D("0.85000"),
            "BTCUSD": D("60000.0")}  # fmt: skip
    for n, (symbol, side, lots, _) in enumerate(positions):
        book.take(
            submit_order(
                NewOrder("live:6", symbol, side, OrderType.MARKET, lots),
                book.accounts["live:6"],
                book.instruments[symbol],
                book.prices,
                f"o{n}",
                f"o{n}-open",
                NOW,
            )
        )
        outcome = book.deliver(fill(f"o{n}-open", f"x{n}", str(lots), str(base[symbol])))
        assert isinstance(outcome, Applied)
        assert (
            book.accounts["live:6"].used_margin_all >= book.accounts["live:6"].used_margin_executed
        )
    order_of_close = list(range(len(positions)))
    rnd.shuffle(order_of_close)  # type: ignore[attr-defined]
    for n in order_of_close:
        symbol, _, lots, move = positions[n]
        book.take(request_close(book.orders[f"o{n}"], book.accounts["live:6"], f"c{n}", NOW))
        step = book.instruments[symbol].spread_pip * 10
        close_px = base[symbol] + step * move
        assert isinstance(book.deliver(fill(f"c{n}", f"y{n}", str(lots), str(close_px))), Applied)
    final = book.accounts["live:6"]
    assert final.used_margin_executed == 0
    assert final.used_margin_all == 0
    assert final.positions == () and final.reservations == ()
    nets = sum((o.net_profit or D(0) for o in book.orders.values()), D(0))
    assert final.balance == D(1000000) + nets
