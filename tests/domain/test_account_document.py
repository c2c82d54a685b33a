"""``codec.account_document`` encodes only what changed and equals ``account_to_dict``."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from execflow.domain import codec
from execflow.domain.accounting import add_position, close_position, reserve
from execflow.domain.enums import Side
from execflow.domain.models import Position
from tests.domain.factories import account

D = Decimal

_steps = st.lists(
    st.tuples(st.sampled_from(["open", "close", "replace", "reserve"]), st.integers(0, 40)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(_steps, st.sampled_from(["live:6", "live:7"]))
def test_account_document_equals_account_to_dict_after_any_opens_and_closes(
    steps: list[tuple[str, int]], account_id: str
) -> None:
    acct = account(account_id=account_id, balance=D(1000000))
    opened: list[str] = []
    for n, (kind, pick) in enumerate(steps):
        if kind == "open":
            side = Side.BUY if pick % 2 else Side.SELL
            acct = add_position(
                acct, Position(f"o{pick:02d}-{n}", "EURUSD", side, D("0.1"), D(pick))
            )
            opened.append(f"o{pick:02d}-{n}")
        elif kind == "close" and opened:
            acct = close_position(acct, opened.pop(pick % len(opened)), D(1))
        elif kind == "replace" and opened:
            order_id = opened[pick % len(opened)]
            acct = add_position(acct, Position(order_id, "USDJPY", Side.SELL, D(pick + 1), D(7)))
        elif kind == "reserve":
            acct = reserve(acct, f"r{n}", D(pick + 1))
        document = codec.account_document(acct)
        assert document == codec.account_to_dict(acct)
        assert list(document) == list(codec.account_to_dict(acct))  # same key order
        assert codec.account_from_dict(document) == acct


def test_a_document_list_is_the_callers_and_a_hand_built_account_is_encoded_whole() -> None:
    acct = add_position(account(), Position("o1", "EURUSD", Side.BUY, D("0.1"), D(1085)))
    first = codec.account_document(acct)
    first["positions"].append({"order_id": "not stored"})
    assert codec.account_document(acct) == codec.account_to_dict(acct)
    # a tuple the memo never saw derived (built by hand) is encoded item by item
    hand = account(positions=(Position("o9", "EURUSD", Side.SELL, D("0.2"), D(1)),))
    assert codec.account_document(hand) == codec.account_to_dict(hand)
