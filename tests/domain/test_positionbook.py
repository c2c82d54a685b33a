"""The per-symbol aggregates of ``domain.positionbook`` equal a full recomputation."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain.accounting import add_position, close_position, reserve, with_margins
from execflow.domain.enums import Side
from execflow.domain.models import Account, Position
from execflow.domain.money import used_margin_executed
from execflow.domain.positionbook import PositionBook, book_of, edit_of
from tests.domain.factories import account

D = Decimal

_SYMBOLS = ("EURUSD", "USDJPY", "BTCUSD")

# One step: open a new position (symbol, side, lots, per-lot margin), close the k-th open
# one, replace the k-th open one (same order id, new figures), or reserve for a new order.
_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("open"),
            st.sampled_from(_SYMBOLS),
            st.sampled_from(Side),
            st.integers(1, 500).map(lambda n: D(n) / 100),
            st.sampled_from([D("1085.01"), D("1085.010"), D("1200"), D("13.57"), D("1085.01")]),
        ),
        st.tuples(st.just("close"), st.integers(0, 50), st.integers(-500, 500)),
        st.tuples(st.just("replace"), st.integers(0, 50), st.integers(1, 300)),
        st.tuples(st.just("reserve"), st.integers(1, 900)),
    ),
    max_size=40,
)


def _recomputed(acct: Account) -> Account:
    """The same account with its margins derived by a walk over plain tuples."""
    return with_margins(acct, tuple(list(acct.positions)), tuple(list(acct.reservations)))


def _check(acct: Account) -> None:
    walk = used_margin_executed(acct.positions)
    assert acct.used_margin_executed == walk
    assert str(acct.used_margin_executed) == str(walk)  # the same digits, not only the value
    assert acct.used_margin_all == walk + acct.reserved_total
    assert [p.order_id for p in acct.positions] == sorted(p.order_id for p in acct.positions)
    assert len({p.order_id for p in acct.positions}) == len(acct.positions)
    found = book_of(acct.positions)
    if found is not None:
        assert found == PositionBook.of(acct.positions)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_book_equals_a_full_recomputation_after_any_opens_and_closes(steps: list) -> None:  # type: ignore[type-arg]
    acct = account(balance=D(1000000))
    opened: list[str] = []
    for n, step in enumerate(steps):
        if step[0] == "open":
            _, symbol, side, lots, per_lot = step
            acct = add_position(acct, Position(f"o{n:03d}", symbol, side, lots, per_lot))
            opened.append(f"o{n:03d}")
        elif step[0] == "close" and opened:
            order_id = opened.pop(step[1] % len(opened))
            acct = close_position(acct, order_id, D(step[2]) / 100)
        elif step[0] == "replace" and opened:
            old = next(p for p in acct.positions if p.order_id == opened[step[1] % len(opened)])
            lots = D(step[2]) / 100
            acct = add_position(acct, replace(old, lots=lots))
        elif step[0] == "reserve":
            acct = reserve(acct, f"r{n:03d}", D(step[1]))
        _check(acct)
        assert acct == _recomputed(acct)
    for order_id in list(opened):
        acct = close_position(acct, order_id, D(0))
        _check(acct)
    assert acct.positions == ()
    assert acct.used_margin_executed == 0
    assert str(acct.used_margin_executed) == "0"


def test_an_account_built_by_hand_is_sorted_and_walked_once() -> None:
    hand = account(
        positions=(
            Position("o2", "EURUSD", Side.BUY, D("0.20"), D("1085")),
            Position("o1", "EURUSD", Side.SELL, D("0.50"), D("1086")),
        )
    )
    opened = add_position(hand, Position("o0", "USDJPY", Side.BUY, D("1"), D("1000")))
    assert [p.order_id for p in opened.positions] == ["o0", "o1", "o2"]
    assert opened.used_margin_executed == D("543.00") + D("1000.00")
    closed = close_position(opened, "o1", D("5"))
    assert closed.used_margin_executed == D("217.00") + D("1000.00")
    assert closed.balance == hand.balance + 5
    assert book_of(closed.positions) == PositionBook.of(closed.positions)


def test_closing_the_largest_per_lot_margin_walks_its_symbol_again() -> None:
    acct = account()
    for n, per_lot in enumerate((D("1000"), D("1200"), D("1100"))):
        acct = add_position(acct, Position(f"o{n}", "EURUSD", Side.BUY, D("1"), per_lot))
    assert acct.used_margin_executed == D("3600.00")
    acct = close_position(acct, "o1", D(0))
    assert acct.used_margin_executed == D("2200.00")  # 1100 * 2 lots: the next largest
    assert acct.used_margin_executed == used_margin_executed(acct.positions)


def test_an_accounts_chain_keeps_the_books_of_its_newest_tuple_and_its_parent_only() -> None:
    acct = account(balance=D(1000000))
    chain = []
    for n in range(6):
        acct = add_position(acct, Position(f"o{n}", "EURUSD", Side.BUY, D("0.01"), D("1085")))
        chain.append(acct.positions)
    newest, parent = chain[-1], chain[-2]
    assert book_of(newest) == PositionBook.of(newest)
    assert book_of(parent) == PositionBook.of(parent)  # a failed commit retries from it
    edit = edit_of(newest)
    assert edit is not None and edit.parent is parent
    # superseded: each would keep a whole positions tuple alive
    assert [book_of(older) for older in chain[:-2]] == [None] * 4


def test_a_retry_from_the_parent_still_finds_its_book_and_edit() -> None:
    acct = add_position(account(), Position("o0", "EURUSD", Side.BUY, D("1"), D("1000")))
    base = add_position(acct, Position("o1", "EURUSD", Side.BUY, D("1"), D("1000")))
    first = add_position(base, Position("o2", "EURUSD", Side.BUY, D("1"), D("1000")))
    retried = add_position(base, Position("o3", "EURUSD", Side.SELL, D("1"), D("1000")))
    assert book_of(base.positions) is not None
    edit = edit_of(retried.positions)
    assert edit is not None and edit.parent is base.positions
    assert book_of(first.positions) is not None  # not an ancestor of the retry: kept
